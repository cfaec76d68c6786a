"""The process runtime and its provider endpoint, end to end with real agent processes.

A minimal platform runs in the test: a memory bus with small in-test service workers for
``infer`` (deterministic: it upper-cases the last user message), ``embed``, ``kv`` and
``vec``. Agents run as real child processes and call back through the provider with the
official OpenAI client and plain HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from cli_helpers import alive as process_alive
from roost.agents import AgentManifest, load_manifest, parse_manifest
from roost.bus import MemoryBus
from roost.protocol import (
    AgentError,
    ChatMessage,
    ChatRequest,
    ChatResult,
    EmbedRequest,
    EmbedResult,
    InvalidRequestError,
    InvokeMessage,
    KvDelete,
    KvGet,
    KvList,
    KvPut,
    KvValue,
    Message,
    RequestMessage,
    ServiceTimeoutError,
    ToolCall,
    Usage,
    VecDelete,
    VecResult,
    VecSearch,
    VectorHit,
    VectorItem,
    VecUpsert,
    from_body,
    to_body,
)
from roost.runtime import AgentContext, BusDispatcher
from roost.runtime._process import ProcessRuntime, resolve_command
from roost.runtime._provider import ProviderEndpoint
from roost.services import ServiceWorker
from roost.stores._records import AgentRecord

pytestmark = pytest.mark.processes  # agent servers, installers, engine hosts

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "process-agent"


# --- in-test services ---------------------------------------------------------------------


class FakeInfer(ServiceWorker):
    """Answers with the last user message upper-cased; offers a tool call when tools are
    given and no tool result is in the chat yet; fails on the prompt ``fail``."""

    service = "infer"

    async def op_chat(self, request: RequestMessage) -> dict[str, Any]:
        chat = from_body(request.body, ChatRequest)
        last = next(m.content for m in reversed(chat.messages) if m.role == "user")
        if last == "fail":
            raise InvalidRequestError("the fake model refuses to answer 'fail'")
        model = chat.model or "fake-chat"
        usage = Usage(prompt_tokens=len(last.split()), completion_tokens=len(last.split()))
        tool_results = [m for m in chat.messages if m.role == "tool"]
        if chat.tools and not tool_results:
            call = ToolCall(id="call_1", name=chat.tools[0].name, arguments={"city": last})
            message = ChatMessage(role="assistant", tool_calls=[call])
            result = ChatResult(message, model=model, finish_reason="tool_calls", usage=usage)
        else:
            text = f"{tool_results[-1].name}={tool_results[-1].content}" if tool_results else last
            message = ChatMessage(role="assistant", content=text.upper())
            result = ChatResult(message, model=model, finish_reason="stop", usage=usage)
        return to_body(result)


class FakeEmbed(ServiceWorker):
    service = "embed"

    async def op_embed(self, request: RequestMessage) -> dict[str, Any]:
        embed = from_body(request.body, EmbedRequest)
        vectors = [[float(len(text)), 1.0, 0.5] for text in embed.inputs]
        usage = Usage(prompt_tokens=sum(len(t.split()) for t in embed.inputs))
        return to_body(EmbedResult(vectors, model=embed.model, dimension=3, usage=usage))


class DictKv(ServiceWorker):
    """KV in a dict, keyed by (agent, scope, session, branch); session scope per session."""

    service = "kv"

    def __init__(self, bus: MemoryBus) -> None:
        super().__init__(bus)
        self.data: dict[tuple[str, ...], bytes] = {}

    def _space(self, request: RequestMessage, scope: str) -> tuple[str, ...]:
        if scope == "agent":
            return (request.agent, "agent")
        return (request.agent, "session", request.session, request.branch)

    async def op_get(self, request: RequestMessage) -> dict[str, Any]:
        get = from_body(request.body, KvGet)
        value = self.data.get((*self._space(request, get.scope), get.key))
        return to_body(KvValue(found=value is not None, value=value))

    async def op_put(self, request: RequestMessage) -> dict[str, Any]:
        put = from_body(request.body, KvPut)
        self.data[(*self._space(request, put.scope), put.key)] = put.value
        return to_body(KvValue(found=True, commit=f"c{len(self.data)}"))

    async def op_delete(self, request: RequestMessage) -> dict[str, Any]:
        delete = from_body(request.body, KvDelete)
        self.data.pop((*self._space(request, delete.scope), delete.key), None)
        return to_body(KvValue(commit="deleted"))

    async def op_list(self, request: RequestMessage) -> dict[str, Any]:
        listing = from_body(request.body, KvList)
        space = self._space(request, listing.scope)
        keys = sorted(
            k[-1]
            for k in self.data
            if k[:-1] == space and isinstance(k[-1], str) and k[-1].startswith(listing.prefix)
        )
        return to_body(KvValue(keys=keys))


class DictVec(ServiceWorker):
    service = "vec"

    def __init__(self, bus: MemoryBus) -> None:
        super().__init__(bus)
        self.items: dict[tuple[str, str], VectorItem] = {}

    async def op_upsert(self, request: RequestMessage) -> dict[str, Any]:
        upsert = from_body(request.body, VecUpsert)
        for item in upsert.items:
            self.items[(upsert.collection, item.id)] = item
        return to_body(VecResult(count=len(upsert.items)))

    async def op_search(self, request: RequestMessage) -> dict[str, Any]:
        search = from_body(request.body, VecSearch)
        hits = sorted(
            (
                VectorHit(
                    id=item.id,
                    distance=sum(
                        (a - b) ** 2 for a, b in zip(item.vector, search.vector, strict=True)
                    ),
                    metadata=item.metadata,
                    text=item.text,
                )
                for (collection, _), item in self.items.items()
                if collection == search.collection
            ),
            key=lambda hit: hit.distance,
        )
        return to_body(VecResult(hits=hits[: search.k], count=len(hits[: search.k])))

    async def op_delete(self, request: RequestMessage) -> dict[str, Any]:
        delete = from_body(request.body, VecDelete)
        removed = [self.items.pop((delete.collection, i), None) for i in delete.ids]
        return to_body(VecResult(count=sum(1 for r in removed if r is not None)))


class ListRecorder:
    """Keeps every recorded message (stands in for the session DAG)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def record(self, message: Message, **annotations: Any) -> str:
        self.messages.append(message)
        return str(len(self.messages))


# --- fixtures -----------------------------------------------------------------------------


@dataclass
class Rig:
    bus: MemoryBus
    provider: ProviderEndpoint
    runtime: ProcessRuntime
    recorder: ListRecorder
    pids: set[int] = field(default_factory=set)

    def context(self, agent: str, input: Any, session: str = "s1") -> AgentContext:
        invocation = InvokeMessage(agent=agent, input=input, session=session, timeout_s=60)
        return AgentContext(
            invocation,
            BusDispatcher(self.bus, self.recorder, invocation),
            chat_model="fake-chat",
            embedding_model="fake-embed",
        )

    async def run(
        self,
        record: AgentRecord,
        input: Any,
        session: str = "s1",
        runtime: ProcessRuntime | None = None,
    ) -> Any:
        runtime = runtime or self.runtime
        manifest = parse_manifest(record.manifest)
        try:
            return await runtime.run(self.context(record.name, input, session), record, manifest)
        finally:
            self.pids.update(runtime.processes.values())


def example_record(version: int = 1) -> AgentRecord:
    manifest = load_manifest(EXAMPLE)
    return AgentRecord(
        manifest.name, version, manifest.model_dump(mode="json"), str(EXAMPLE), time.time()
    )


# A stdlib-only agent whose behaviour is chosen by the MODE variable of its manifest env.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    MODE = os.environ["MODE"]
    if MODE == "crash":
        print("boom: cannot start", file=sys.stderr, flush=True)
        sys.exit(3)
    if MODE == "never-healthy":
        print("warming up forever", file=sys.stderr, flush=True)
        time.sleep(120)

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            self.reply(200, {"ok": True})
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if MODE == "slow":
                time.sleep(30)
            if MODE == "error":
                return self.reply(422, {"error": "the input was not to my liking"})
            if MODE == "die":
                os._exit(9)
            self.reply(200, {"output": {"input": body["input"], "env": os.environ.get("EXTRA")}})
        def reply(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
    """
)


def script_record(tmp_path: Path, mode: str, *, timeout_s: float | None = None) -> AgentRecord:
    folder = tmp_path / mode
    folder.mkdir()
    (folder / "server.py").write_text(SCRIPT)
    data: dict[str, Any] = {
        "name": f"test-{mode}",
        "runtime": "process",
        "entry": "python3 server.py",
        "env": {"MODE": mode, "EXTRA": "from-manifest"},
    }
    if timeout_s is not None:
        data["timeout_s"] = timeout_s
    manifest: AgentManifest = parse_manifest(data)
    return AgentRecord(manifest.name, 1, manifest.model_dump(mode="json"), str(folder), 0.0)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    bus = MemoryBus()
    await bus.connect()
    workers: list[ServiceWorker] = [FakeInfer(bus), FakeEmbed(bus), DictKv(bus), DictVec(bus)]
    for worker in workers:
        await worker.start()
    provider = ProviderEndpoint()
    await provider.start()
    runtime = ProcessRuntime(provider, start_timeout_s=20, stop_grace_s=2)
    rig = Rig(bus, provider, runtime, ListRecorder())
    try:
        yield rig
    finally:
        await runtime.close()
        await provider.stop()
        for worker in workers:
            await worker.stop()
        await bus.close()
        # no orphans: every agent process seen in the test is gone
        for _ in range(50):
            if not any(alive(pid) for pid in rig.pids):
                break
            await asyncio.sleep(0.05)
        assert not [pid for pid in rig.pids if alive(pid)]


# --- the example agent through the runtime -----------------------------------------------


async def test_example_agent_answers_counts_and_reuses_its_process(rig: Rig) -> None:
    record = example_record()
    first = await rig.run(record, "hello there")
    assert first == {"answer": "HELLO THERE", "count": 1}
    pid = rig.runtime.pid("process-agent", 1)
    assert pid is not None

    second = await rig.run(record, {"prompt": "again"})
    assert second == {"answer": "AGAIN", "count": 2}
    assert rig.runtime.pid("process-agent", 1) == pid
    assert rig.runtime.starts == 1

    # another session has its own (session-scoped) counter
    assert (await rig.run(record, "elsewhere", session="s2"))["count"] == 1

    # the agent's calls were typed bus requests, recorded like any other
    requests = [m for m in rig.recorder.messages if isinstance(m, RequestMessage)]
    assert [(r.service, r.op) for r in requests[:3]] == [
        ("kv", "get"),
        ("kv", "put"),
        ("infer", "chat"),
    ]
    chat = from_body(requests[2].body, ChatRequest)
    assert chat.model == "fake-chat"  # "default" means the context's chat model
    assert chat.messages[0].role == "system" and chat.messages[0].content.startswith("You are")
    assert rig.provider.active_sessions == 0  # tokens die with their invocation


async def test_concurrent_invocations_share_one_process(rig: Rig) -> None:
    record = example_record()
    outputs = await asyncio.gather(
        rig.run(record, "one", session="a"), rig.run(record, "two", session="b")
    )
    assert [o["answer"] for o in outputs] == ["ONE", "TWO"]
    assert rig.runtime.starts == 1


async def test_crashed_process_is_restarted(rig: Rig) -> None:
    record = example_record()
    await rig.run(record, "first")
    pid = rig.runtime.pid("process-agent", 1)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    for _ in range(100):
        if rig.runtime.pid("process-agent", 1) is None:
            break
        await asyncio.sleep(0.02)

    output = await rig.run(record, "after the crash")
    assert output == {"answer": "AFTER THE CRASH", "count": 2}  # KV lives in the platform
    new_pid = rig.runtime.pid("process-agent", 1)
    assert new_pid is not None and new_pid != pid
    assert rig.runtime.starts == 2


async def test_agent_failure_carries_the_agents_error(rig: Rig) -> None:
    with pytest.raises(AgentError) as info:
        await rig.run(example_record(), "fail")
    message = str(info.value)
    assert "'process-agent'" in message and "HTTP 500" in message
    assert "the fake model refuses to answer 'fail'" in message  # 400 through the OpenAI SDK


async def test_newer_version_retires_the_older_process(rig: Rig) -> None:
    await rig.run(example_record(1), "v1")
    old = rig.runtime.pid("process-agent", 1)
    assert old is not None
    await rig.run(example_record(2), "v2")
    for _ in range(100):
        if not alive(old):
            break
        await asyncio.sleep(0.05)
    assert not alive(old)
    assert list(rig.runtime.processes) == [("process-agent", 2)]


# --- start-up and invocation failures (stdlib-only test agents) ---------------------------


async def test_never_healthy_process_times_out_clearly(rig: Rig, tmp_path: Path) -> None:
    runtime = ProcessRuntime(rig.provider, start_timeout_s=1.0, stop_grace_s=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(AgentError) as info:
            await rig.run(script_record(tmp_path, "never-healthy"), "x", runtime=runtime)
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert "'test-never-healthy'" in message
        assert "did not become healthy" in message and "/health" in message
        assert "warming up forever" in message  # the stderr tail
        assert runtime.processes == {} and not runtime._all  # stopped, not orphaned
    finally:
        await runtime.close()


async def test_process_exiting_at_start_reports_its_stderr(rig: Rig, tmp_path: Path) -> None:
    with pytest.raises(AgentError) as info:
        await rig.run(script_record(tmp_path, "crash"), "x")
    message = str(info.value)
    assert "'test-crash'" in message and "exited with code 3" in message
    assert "boom: cannot start" in message


async def test_a_program_that_cannot_start_is_named(rig: Rig, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "server.sh").write_text("#!/bin/sh\n")  # not executable

    def record(entry: str) -> AgentRecord:
        manifest = parse_manifest({"name": "bad", "runtime": "process", "entry": entry})
        return AgentRecord("bad", 1, manifest.model_dump(mode="json"), str(folder), 0.0)

    with pytest.raises(AgentError, match="cannot start 'no-such-program-x': no such program"):
        await rig.run(record("no-such-program-x --port 1"), "x")
    with pytest.raises(AgentError, match="server.sh'?: not executable"):
        await rig.run(record("server.sh"), "x")


async def test_manifest_env_and_error_status(rig: Rig, tmp_path: Path) -> None:
    assert await rig.run(script_record(tmp_path, "ok"), [1, 2]) == {
        "input": [1, 2],
        "env": "from-manifest",
    }
    with pytest.raises(AgentError, match="HTTP 422.*not to my liking"):
        await rig.run(script_record(tmp_path, "error"), "x")


async def test_invoke_uses_the_remaining_run_timeout(rig: Rig, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(
        ServiceTimeoutError, match=r"'test-slow' \(version 1\) did not answer POST /invoke"
    ):
        await rig.run(script_record(tmp_path, "slow", timeout_s=1.5), "x")
    assert time.monotonic() - started < 5


async def test_process_dying_mid_invocation(rig: Rig, tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="exited with code 9 during the invocation"):
        await rig.run(script_record(tmp_path, "die"), "x")


def test_python_resolves_to_this_interpreter(tmp_path: Path) -> None:
    import sys

    (tmp_path / "server").write_text("")
    assert resolve_command(["python", "a.py"], tmp_path) == [sys.executable, "a.py"]
    assert resolve_command(["python3"], tmp_path) == [sys.executable]
    assert resolve_command(["server", "-v"], tmp_path) == [str(tmp_path / "server"), "-v"]
    assert resolve_command(["node", "a.js"], tmp_path) == ["node", "a.js"]


# --- the provider endpoint directly -------------------------------------------------------


@contextlib.asynccontextmanager
async def session(rig: Rig, agent: str = "direct") -> AsyncIterator[tuple[str, AgentContext]]:
    ctx = rig.context(agent, None)
    with rig.provider.session(ctx) as token:
        yield token, ctx


async def test_bad_or_missing_token_gets_401(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.provider.url, trust_env=False) as http:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
            response = await http.get("/v1/models", headers=headers)
            assert response.status_code == 401
            error = response.json()["error"]
            assert error["code"] == "auth" and error["type"] == "authentication_error"
            assert (await http.get("/kv/x", headers=headers)).status_code == 401
    async with openai.AsyncOpenAI(
        base_url=rig.provider.api_base, api_key="wrong", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": "hi"}]
            )
    async with session(rig) as (token, _):
        pass
    async with openai.AsyncOpenAI(
        base_url=rig.provider.api_base, api_key=token, max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError):  # a closed session's token is dead
            await client.models.list()


async def test_openai_client_chat_stream_tools_and_embeddings(rig: Rig) -> None:
    async with (
        session(rig) as (token, _),
        openai.AsyncOpenAI(base_url=rig.provider.api_base, api_key=token, max_retries=0) as client,
    ):
        models = await client.models.list()
        assert [m.id for m in models.data] == ["fake-chat", "fake-embed"]

        completion = await client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hi there"}]
        )
        assert completion.choices[0].message.content == "HI THERE"
        assert completion.choices[0].finish_reason == "stop"
        assert completion.model == "fake-chat"
        assert completion.usage is not None and completion.usage.total_tokens == 4

        stream = await client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": [{"type": "text", "text": "stream me"}]}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finish, usage = "", None, None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        assert (text, finish) == ("STREAM ME", "stop")
        assert usage is not None and usage.prompt_tokens == 2

        tools: Any = [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather of a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ]
        messages: list[Any] = [{"role": "user", "content": "Paris"}]
        asked = await client.chat.completions.create(
            model="fake-chat", messages=messages, tools=tools
        )
        reply = asked.choices[0]
        assert reply.finish_reason == "tool_calls" and reply.message.content is None
        assert reply.message.tool_calls is not None
        call = reply.message.tool_calls[0]
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        assert call.function.name == "get_weather"
        assert call.function.arguments == '{"city": "Paris"}'  # a JSON string, as OpenAI's
        messages += [
            reply.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ]
        answered = await client.chat.completions.create(
            model="fake-chat", messages=messages, tools=tools
        )
        assert answered.choices[0].message.content == "GET_WEATHER=SUNNY"

        streamed_call = await client.chat.completions.create(
            model="fake-chat", messages=messages[:1], tools=tools, stream=True
        )
        deltas = [c.choices[0] async for c in streamed_call if c.choices]
        tool_deltas = [d for c in deltas for d in c.delta.tool_calls or []]
        assert tool_deltas[0].function is not None
        assert tool_deltas[0].function.arguments == '{"city": "Paris"}'
        assert deltas[-1].finish_reason == "tool_calls"

        embedded = await client.embeddings.create(model="default", input=["ab", "abcd"])
        assert [d.embedding for d in embedded.data] == [[2.0, 1.0, 0.5], [4.0, 1.0, 0.5]]
        as_floats = await client.embeddings.create(
            model="default", input="abc", encoding_format="float"
        )
        assert as_floats.data[0].embedding == [3.0, 1.0, 0.5]
        assert as_floats.model == "fake-embed"

        with pytest.raises(openai.BadRequestError, match="refuses"):
            await client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": "fail"}]
            )


async def test_kv_and_vector_routes(rig: Rig) -> None:
    async with (
        session(rig) as (token, _),
        httpx.AsyncClient(
            base_url=rig.provider.url,
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        ) as http,
    ):
        assert (await http.get("/kv/notes/a")).status_code == 404
        assert (await http.get("/kv/notes/a")).json()["error"]["code"] == "not_found"
        put = await http.put("/kv/notes/a", content=b"\x00binary\xff")
        assert put.status_code == 200 and put.json()["commit"]
        got = await http.get("/kv/notes/a")
        assert got.content == b"\x00binary\xff"
        await http.put("/kv/notes/b", content=b"2")
        await http.put("/kv/other", content=b"3")
        assert (await http.get("/kv", params={"prefix": "notes/"})).json() == ["notes/a", "notes/b"]
        assert (await http.delete("/kv/notes/a")).status_code == 200
        assert (await http.get("/kv/notes/a")).status_code == 404

        # the agent-wide scope is separate from the session scope
        await http.put("/kv/shared", content=b"x", params={"scope": "agent"})
        assert (await http.get("/kv/shared")).status_code == 404
        assert (await http.get("/kv/shared", params={"scope": "agent"})).content == b"x"
        bad = await http.get("/kv/shared", params={"scope": "world"})
        assert bad.status_code == 400 and "scope" in bad.json()["error"]["message"]

        items = [
            {"id": "a", "vector": [0.0, 0.0], "metadata": {"n": 1}, "text": "origin"},
            {"id": "b", "vector": [1.0, 1.0]},
        ]
        assert (await http.post("/vectors/docs/upsert", json={"items": items})).json() == {
            "count": 2
        }
        hits = (await http.post("/vectors/docs/search", json={"vector": [0.9, 0.9], "k": 1})).json()
        assert [h["id"] for h in hits["hits"]] == ["b"]
        assert (await http.post("/vectors/docs/delete", json={"ids": ["a"]})).json() == {"count": 1}
        invalid = await http.post("/vectors/docs/search", json={"vector": "nope"})
        assert invalid.status_code == 400
        assert invalid.json()["error"]["type"] == "invalid_request_error"

        assert (await http.post("/progress", json={"message": "halfway", "step": 2})).json() == {
            "ok": True
        }
        # the raw stream is server-sent events ending with [DONE]
        chat = {"messages": [{"role": "user", "content": "raw"}], "stream": True}
        async with http.stream("POST", "/v1/chat/completions", json=chat) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line async for line in response.aiter_lines() if line]
        assert events[-1] == "data: [DONE]"
        assert all(e.startswith("data: ") for e in events)
        unknown = await http.get("/v2/nothing")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        not_json = await http.post("/v1/chat/completions", content=b"{")
        assert not_json.status_code == 400
        # no tool service runs in this rig: the bus reports no responders -> 503
        missing = await http.post("/tools/calculator", json={"expression": "1+1"})
        assert missing.status_code == 503 and missing.json()["error"]["code"] == "no_responders"


ORPHAN_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from roost.agents import parse_manifest
    from roost.runtime._process import ProcessRuntime
    from roost.runtime._provider import ProviderEndpoint
    from roost.stores._records import AgentRecord

    async def main(folder):
        provider = ProviderEndpoint()
        await provider.start()
        runtime = ProcessRuntime(provider, start_timeout_s=20)
        data = {"name": "orphan", "runtime": "process", "entry": "python3 server.py",
                "env": {"MODE": "ok"}}
        manifest = parse_manifest(data)
        record = AgentRecord("orphan", 1, manifest.model_dump(mode="json"), folder, 0.0)
        process = await runtime._ensure(record, manifest, asyncio.get_running_loop().time() + 20)
        print(process.pid, flush=True)
        await asyncio.sleep(600)

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux (/proc, PDEATHSIG)")
def test_a_killed_roost_process_leaves_no_agent_process(tmp_path: Path) -> None:
    """SIGKILL gives roost no chance to stop its agents; the kernel does it for them."""
    import subprocess
    import sys

    folder = tmp_path / "orphan"
    folder.mkdir()
    (folder / "server.py").write_text(SCRIPT)
    child = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_CHILD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    agent = int(child.stdout.readline())
    try:
        assert process_alive(agent)
        child.kill()
        child.wait(10)
        deadline = time.monotonic() + 10
        while process_alive(agent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(agent), "the agent process outlived the roost process"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agent, signal.SIGKILL)
        child.kill()
