"""The CLI through the HTTP API: ``roost`` commands as subprocesses against an in-process API
server (``ROOST_CLIENT__API_URL``), and :class:`HttpPlatform` itself against it (records,
the SSE stream and its resumption, error mapping), plus the client settings that choose it.

The API server runs in the test's event loop, so every CLI subprocess runs without blocking
the loop (``asyncio.to_thread`` or ``asyncio.create_subprocess_exec``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import make_agent
from api_helpers import CHATTY, TOKEN, Api, api_server, deploy
from cli_helpers import ROOT, cli_env, ok, one_line_error, run_cli
from roost.config import ClientSettings, ConfigError, load_client_settings
from roost.platform import HttpPlatform
from roost.platform._http import ServerSentEvent, SseDecoder, error_from_response
from roost.protocol import (
    EventMessage,
    InvalidRequestError,
    NotFoundError,
    ProtocolError,
    RoostError,
    ServiceTimeoutError,
    ServiceUnavailableError,
    UpstreamError,
)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with api_server(tmp_path / "server") as server:
        yield server


def client_env(api: Api, home: Path, token: str = TOKEN, **extra: str) -> dict[str, str]:
    """A CLI environment on ``home`` (no database of its own is used) that talks to ``api``."""
    return cli_env(home, ROOST_CLIENT__API_URL=api.url, ROOST_CLIENT__TOKEN=token, **extra)


async def roost(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``roost ARGS`` in a subprocess, in a thread: the server in this loop keeps serving."""
    return await asyncio.to_thread(run_cli, env, *args, timeout=90)


# --- the CLI ----------------------------------------------------------------------------------


@pytest.mark.e2e
async def test_agents_runs_and_sessions_through_the_api(api: Api, tmp_path: Path) -> None:
    home = tmp_path / "client"
    env = client_env(api, home)
    folder = make_agent(tmp_path / "agents", "chatty", CHATTY, services=())

    assert "deployed chatty version 1 (python runtime)" in ok(
        await roost(env, "agent", "deploy", str(folder))
    )
    assert "chatty" in ok(await roost(env, "agent", "list"))
    [listed] = json.loads(ok(await roost(env, "agent", "list", "--json")))
    assert (listed["name"], listed["version"], listed["runtime"]) == ("chatty", 1, "python")
    assert f"{api.url}/api/v1/agents/chatty" in ok(await roost(env, "agent", "get", "chatty"))

    proc = await roost(env, "agent", "run", "chatty", "-p", "hello")
    assert json.loads(ok(proc)) == {"reply": "echo: hello"}
    summary = re.search(r"run (\S+) · session (\S+) · branch main", proc.stderr)
    assert summary, proc.stderr
    run_id, session = summary.groups()

    result = json.loads(ok(await roost(env, "agent", "run", "chatty", "-p", "again", "--json")))
    assert result["ok"] and result["output"] == {"reply": "echo: again"}
    assert result["session"] != session  # no --session: a new one

    # read-only commands, side by side
    listed_runs, shown, as_json, sessions, newest, detail, nodes_json = map(
        ok,
        await asyncio.gather(
            roost(env, "run", "list"),
            roost(env, "run", "get", run_id),
            roost(env, "run", "get", run_id, "--json"),
            roost(env, "session", "list"),
            roost(env, "session", "list", "--limit", "1"),
            roost(env, "session", "get", session),
            roost(env, "session", "get", session, "--json"),
        ),
    )
    assert run_id in listed_runs and result["run"] in listed_runs
    assert session in listed_runs and "completed" in listed_runs  # the session's name
    assert f"run {run_id} · chatty · completed" in shown and "echo: hello" in shown
    run = json.loads(as_json)
    assert run["status"] == "completed" and run["output"] == {"reply": "echo: hello"}
    assert session in sessions and result["session"] in sessions
    assert result["session"] in newest and session not in newest  # most recently active
    assert "branches: main" in detail
    for kind in ("invoke", "event", "complete"):
        assert kind in detail
    nodes = json.loads(nodes_json)
    assert nodes[0]["kind"] == "invoke" and nodes[-1]["kind"] == "complete"
    assert not (home / "roost.db").exists()  # everything went through the API


@pytest.mark.e2e
async def test_fork_promote_and_delete_through_the_api(api: Api, tmp_path: Path) -> None:
    env = client_env(api, tmp_path / "client")
    async with api.client() as client:
        await deploy(client, tmp_path / "agents", "chatty")
    first = json.loads(ok(await roost(env, "agent", "run", "chatty", "-p", "hi", "--json")))
    session = first["session"]
    # continue the session, fork it before the second run, promote the fork
    again = ok(await roost(env, "agent", "run", "chatty", "-p", "more", "-s", session))
    assert json.loads(again) == {"reply": "echo: more"}
    nodes = json.loads(ok(await roost(env, "session", "get", session, "--json")))
    first_complete = next(n for n in nodes if n["kind"] == "complete")
    forked = ok(
        await roost(
            env, "session", "fork", session, "--from", first_complete["id"][:12], "-b", "alt"
        )
    )
    assert "forked branch alt" in forked
    assert "is now the main branch" in ok(await roost(env, "session", "promote", session, "alt"))
    [branches] = [
        line for line in ok(await roost(env, "session", "get", session)).splitlines()
        if line.startswith("branches: ")
    ]  # fmt: skip
    assert sorted(branches.removeprefix("branches: ").split(", ")) == ["alt", "main"]

    assert "deleted chatty" in ok(await roost(env, "agent", "delete", "chatty"))
    assert "not deployed" in one_line_error(await roost(env, "agent", "get", "chatty"))


@pytest.mark.e2e
async def test_a_run_streams_its_events_live_and_is_answered(api: Api, tmp_path: Path) -> None:
    """``agent run`` follows the SSE stream as the run goes: its question shows up while it
    waits, ``run answer`` (another process) answers it, and the run ends with the answer."""
    home = tmp_path / "client"
    env = client_env(api, home)
    folder = make_agent(tmp_path / "agents", "chatty", CHATTY, services=())
    ok(await roost(env, "agent", "deploy", str(folder)))

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "roost",
        "agent",
        "run",
        "chatty",
        "--input",
        json.dumps({"ask": "what is your name?"}),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None and proc.stdout is not None
    try:
        seen: list[str] = []
        run_id = ""
        async with asyncio.timeout(60):
            while not run_id:
                line = (await proc.stderr.readline()).decode()
                assert line, f"the run ended before asking: {''.join(seen)}"
                seen.append(line)
                found = re.search(r"answer with: roost run answer (\S+) TEXT", line)
                run_id = found.group(1) if found else ""
        assert any("? what is your name?" in line for line in seen), seen
        waiting = ok(await roost(env, "run", "get", run_id))
        assert "waiting for an answer" in waiting and "what is your name?" in waiting
        assert f"answered {run_id}" in ok(await roost(env, "run", "answer", run_id, "bob"))
        async with asyncio.timeout(60):
            stdout, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert json.loads(stdout) == {"reply": "you said bob"}
    assert "answered: bob" in stderr.decode()


@pytest.mark.e2e
async def test_a_run_can_be_cancelled_through_the_api(api: Api, tmp_path: Path) -> None:
    env = client_env(api, tmp_path / "client")
    folder = make_agent(tmp_path / "agents", "chatty", CHATTY, services=())
    ok(await roost(env, "agent", "deploy", str(folder)))
    async with HttpPlatform(ClientSettings(api_url=api.url, token=TOKEN)) as platform:
        started = await platform.start("chatty", {"ask": "wait for me"})
        info = await platform.harness.get_run(started.run_id)
        for _ in range(100):
            if info.question:
                break
            await asyncio.sleep(0.05)
            info = await platform.harness.get_run(started.run_id)
        assert f"cancelling {started.run_id}" in ok(
            await roost(env, "run", "cancel", started.run_id)
        )
        complete = await platform.harness.wait(started.run_id, session="", timeout_s=30)
        assert not complete.ok
        assert (await platform.harness.get_run(started.run_id)).status != "running"


@pytest.mark.e2e
async def test_models_and_secrets_through_the_api(api: Api, tmp_path: Path) -> None:
    env = client_env(api, tmp_path / "client")
    assert "name" in ok(await roost(env, "model", "list"))  # the table, empty
    added = ok(
        await roost(
            env,
            "model",
            "add",
            "remote-chat",
            "--engine",
            "openai",
            "--target",
            "gpt-x",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--api-key-secret",
            "openai-key",
        )
    )
    assert "added chat model remote-chat (openai)" in added
    listed = ok(await roost(env, "model", "list"))
    assert "remote-chat" in listed and "gpt-x" in listed
    assert "removed remote-chat" in ok(await roost(env, "model", "remove", "remote-chat"))
    assert "remote-chat" not in ok(await roost(env, "model", "list"))
    assert "unknown model" in one_line_error(await roost(env, "model", "remove", "remote-chat"))
    error = one_line_error(await roost(env, "model", "available"))
    assert "not available through the API" in error

    assert "stored secret openai-key" in ok(await roost(env, "secret", "put", "openai-key", "sk-1"))
    assert ok(await roost(env, "secret", "exists", "openai-key")).strip() == "yes"
    assert await api.platform.secrets.get("openai-key") == "sk-1"  # stored on the server
    error = one_line_error(await roost(env, "secret", "get", "openai-key"))
    assert "never returns secret values" in error and "sk-1" not in error
    assert "deleted secret openai-key" in ok(await roost(env, "secret", "delete", "openai-key"))
    gone = await roost(env, "secret", "exists", "openai-key")
    assert gone.returncode == 1 and gone.stdout.strip() == "no"
    assert "no secret" in one_line_error(await roost(env, "secret", "delete", "openai-key"))


@pytest.mark.e2e
async def test_a_wrong_token_or_server_is_a_one_line_error(api: Api, tmp_path: Path) -> None:
    home = tmp_path / "client"
    error = one_line_error(await roost(client_env(api, home, token="wrong"), "agent", "list"))
    assert "refused the request: invalid token" in error and api.url in error
    assert "wrong" not in error  # the token is never printed
    error = one_line_error(await roost(client_env(api, home, token=""), "run", "list"))
    assert "authentication required" in error
    unreachable = cli_env(home, ROOST_CLIENT__API_URL="http://127.0.0.1:9", ROOST_CLIENT__TOKEN="x")
    error = one_line_error(await roost(unreachable, "session", "list"))
    assert "cannot reach the roost API at http://127.0.0.1:9" in error
    both = client_env(api, home, ROOST_CLIENT__HARNESS="control:9091")
    error = one_line_error(await roost(both, "agent", "list"))
    assert "api_url and harness both name a deployment" in error
    bad = cli_env(home, ROOST_CLIENT__API_URL="ftp://example.com")
    assert "is not an http:// or https:// URL" in one_line_error(await roost(bad, "agent", "list"))
    # a token from a file works as well
    (tmp_path / "token").write_text(TOKEN + "\n")
    from_file = cli_env(
        home, ROOST_CLIENT__API_URL=api.url, ROOST_CLIENT__TOKEN_FILE=str(tmp_path / "token")
    )
    ok(await roost(from_file, "agent", "list"))


# --- HttpPlatform against the server -----------------------------------------------------


def settings_for(api: Api, **extra: Any) -> ClientSettings:
    return ClientSettings(api_url=api.url, token=TOKEN, timeout_s=10, **extra)


async def test_http_platform_records_events_and_errors(api: Api, tmp_path: Path) -> None:
    folder = make_agent(tmp_path, "chatty", CHATTY, services=())
    async with HttpPlatform(settings_for(api)) as platform:
        record = await platform.deploy(folder)
        assert (record.name, record.version, record.manifest["runtime"]) == ("chatty", 1, "python")
        assert [a.name for a in await platform.list_agents()] == ["chatty"]
        events: list[EventMessage] = []

        async def collect(event: EventMessage) -> None:  # an async callback is awaited
            events.append(event)

        result = await platform.run("chatty", "hi", on_event=collect)
        assert result.ok and result.output == {"reply": "echo: hi"}
        assert result.complete.correlation_id and result.complete.agent == "chatty"
        assert [(e.type, e.data.get("message")) for e in events] == [
            ("progress", "one"),
            ("progress", "two"),
        ]
        run_id = result.complete.correlation_id
        info = await platform.harness.get_run(run_id)
        assert (info.status, info.agent, info.session) == ("completed", "chatty", result.session.id)
        # a completed run's stream replays its events and completion
        replayed: list[EventMessage] = []
        again = await platform.harness.wait(run_id, session="", on_event=replayed.append)
        assert again.id == result.complete.id and len(replayed) == 2
        [run] = await platform.harness.list_runs()
        assert run.id == run_id
        session = await platform.get_session(result.session.name)
        assert (session.id, session.name, session.agent) == (
            result.session.id,
            result.session.name,
            "chatty",
        )
        [branch] = await platform.list_branches(session.name)
        assert branch.name == "main" and branch.session == session.id
        nodes = await platform.session_nodes(session.name)
        assert nodes[0].kind == "invoke" and nodes[-1].kind == "complete"
        assert {n.session for n in nodes} == {session.id}
        assert [s.id for s in await platform.list_sessions(agent="chatty")] == [session.id]
        assert await platform.list_sessions(agent="nobody") == []
        fork = await platform.fork(session.name, nodes[0].id[:12], "retry")
        assert (fork.name, fork.head) == ("retry", nodes[0].id)
        await platform.promote(session.name, "retry")
        assert (await platform.get_session(session.id)).main_branch == "retry"

        model = await platform.add_model(
            name="m", engine="ollama", target="llama3", base_url="http://127.0.0.1:9"
        )
        assert (model.name, model.engine, model.kind) == ("m", "ollama", "chat")
        assert "m" in [m.name for m in await platform.list_models()]
        await platform.remove_model("m")
        assert "m" not in [m.name for m in await platform.list_models()]

        await platform.secrets.put("key", "value")
        assert await platform.secrets.exists("key") and not await platform.secrets.exists("nope")
        with pytest.raises(InvalidRequestError, match="never returns secret values"):
            await platform.secrets.get("key")
        with pytest.raises(InvalidRequestError, match="does not list secrets"):
            await platform.secrets.list()
        await platform.secrets.delete("key")
        with pytest.raises(NotFoundError, match="no secret"):
            await platform.secrets.delete("key")
        with pytest.raises(InvalidRequestError, match="not available through the API"):
            await platform.available_models()

        # API errors come back as the RoostError of their code
        with pytest.raises(NotFoundError, match="not deployed"):
            await platform.get_agent("nope")
        with pytest.raises(NotFoundError):
            await platform.harness.get_run("no-such-run")
        with pytest.raises(InvalidRequestError, match="run_id"):
            await platform.harness.get_run("bad id!")  # the route's pattern: a 422
        with pytest.raises(InvalidRequestError, match="engine"):
            await platform.add_model(name="x", engine="nonsense", target="t")
        await platform.delete_agent("chatty")
        with pytest.raises(NotFoundError):
            await platform.run("chatty", "hi")
    async with HttpPlatform(ClientSettings(api_url=api.url, token="nope")) as refused:
        with pytest.raises(RoostError, match="invalid token") as caught:
            await refused.list_agents()
        assert caught.value.code == "auth"


async def test_unreachable_and_slow_servers(tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)  # never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        slow = ClientSettings(api_url=f"http://127.0.0.1:{port}", token="t", timeout_s=0.3)
        async with HttpPlatform(slow) as platform:
            with pytest.raises(ServiceTimeoutError, match=f"127.0.0.1:{port} did not answer"):
                await platform.list_agents()
    finally:
        server.close()
    closed = ClientSettings(api_url=f"http://127.0.0.1:{port}", token="t", timeout_s=2)
    async with HttpPlatform(closed) as platform:
        with pytest.raises(ServiceUnavailableError, match=f"http://127.0.0.1:{port}"):
            await platform.get_session("s")


class CuttingProxy:
    """A TCP proxy in front of the API that breaks the first run event stream right after
    its first event with an id (``mid_event``: within that event's data line); it keeps the
    requests it forwarded."""

    def __init__(self, upstream: str, *, mid_event: bool = False) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.mid_event = mid_event
        self.requests: list[bytes] = []
        self.cut = False
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        streaming = False

        async def upstream() -> None:
            nonlocal streaming
            while data := await reader.read(65536):
                self.requests.append(data)
                streaming = b"/events" in data
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            sent = b""
            while data := await up_reader.read(65536):
                if streaming and not self.cut:
                    sent += data
                    start = sent.find(b"\nid: ")
                    end = sent.find(b"\r\n\r\n", start) if start >= 0 else -1
                    if end >= 0:  # one whole event with an id: send it, then break
                        self.cut = True
                        if self.mid_event:  # ... or only part of its data line
                            end = sent.find(b"\ndata: ", start) + 8 - 4
                        writer.write(data[: len(data) - (len(sent) - end - 4)])
                        await writer.drain()
                        writer.transport.abort()
                        return
                writer.write(data)
                await writer.drain()
            writer.close()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        up_writer.close()
        writer.close()


@pytest.mark.parametrize("mid_event", [False, True], ids=["after-an-event", "mid-event"])
async def test_a_broken_event_stream_resumes_after_its_last_event(
    api: Api, tmp_path: Path, mid_event: bool
) -> None:
    folder = make_agent(tmp_path, "chatty", CHATTY, services=())
    proxy = CuttingProxy(api.url, mid_event=mid_event)
    async with proxy as url, HttpPlatform(ClientSettings(api_url=url, token=TOKEN)) as platform:
        await platform.deploy(folder)
        events: list[EventMessage] = []
        result = await platform.run("chatty", "hi", on_event=events.append)
    assert proxy.cut
    assert result.ok and result.output == {"reply": "echo: hi"}
    # nothing lost, nothing twice
    assert [e.data.get("message") for e in events] == ["one", "two"]
    assert len({e.id for e in events}) == 2
    streams = [r for r in proxy.requests if b"/events" in r]
    assert len(streams) == 2
    if mid_event:  # the cut event was never delivered: the stream starts again
        assert b"last-event-id" not in streams[1].lower()
    else:  # resumed after the event it delivered
        assert b"last-event-id: " + events[0].id.encode() in streams[1].lower()


# --- SSE parsing and error bodies ----------------------------------------------------------


def test_sse_decoder_follows_the_event_stream_format() -> None:
    decoder = SseDecoder()
    lines = [
        ": ping",  # a comment: nothing
        "id: 1",
        "event: progress",
        'data: {"a":',
        "data:1}",  # no space after the colon; a second data line
        "",
        "event: token",  # no id: the last one stays
        "data: x",
        "",
        "",  # a blank line alone dispatches nothing
        "id: 2",
        "event: nothing",  # no data: not dispatched, but its id counts
        "",
        "retry: 100",
        "unknown: field",
        "id: bad\0id",  # an id with NUL is ignored
        "data",  # a field without colon: an empty value
        "",
        "id: 3",
        "data: cut off",  # the stream ends here: never dispatched
    ]
    events = [e for e in map(decoder.feed, lines) if e is not None]
    assert events == [
        ServerSentEvent("progress", '{"a":\n1}', "1"),
        ServerSentEvent("token", "x", None),
        ServerSentEvent("message", "", None),
    ]
    # the id of an event that was not dispatched is not where to resume
    assert decoder.last_event_id == "2"
    assert SseDecoder("7").last_event_id == "7"


def test_error_bodies_map_to_roost_errors() -> None:
    url = "http://api:8080"

    def body(code: str, message: str, **details: Any) -> bytes:
        return json.dumps(
            {"error": {"code": code, "message": message, "details": details}}
        ).encode()

    found = error_from_response(404, body("not_found", "no agent 'x'"), url=url)
    assert isinstance(found, NotFoundError) and found.message == "no agent 'x'"
    invalid = error_from_response(422, body("invalid_request", "limit: bad", problems=[1]), url=url)
    assert isinstance(invalid, InvalidRequestError) and invalid.details == {"problems": [1]}
    timeout = error_from_response(504, body("timeout", "still running"), url=url)
    assert isinstance(timeout, ServiceTimeoutError) and timeout.retryable
    manifest = error_from_response(400, body("invalid_manifest", "agent.toml: bad"), url=url)
    assert type(manifest) is RoostError and manifest.code == "invalid_manifest"
    newer = error_from_response(400, body("brand_new", "from the future"), url=url)
    assert newer.code == "brand_new" and not newer.retryable
    auth = error_from_response(401, body("auth", "invalid token"), url=url)
    assert auth.code == "auth" and url in auth.message and "ROOST_CLIENT__TOKEN" in auth.message
    # not roost's body: a proxy's page, or nothing
    proxy = error_from_response(502, b"<html>Bad Gateway</html>", url=url)
    assert isinstance(proxy, UpstreamError) and "HTTP 502" in proxy.message
    assert isinstance(error_from_response(503, b"", url=url), ServiceUnavailableError)
    assert isinstance(error_from_response(418, b"{}", url=url), InvalidRequestError)
    assert error_from_response(500, b'{"error": "x"}', url=url).code == "internal"


async def test_a_bad_answer_is_a_protocol_error(tmp_path: Path) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot json!")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with HttpPlatform(ClientSettings(api_url=f"http://127.0.0.1:{port}")) as platform:
            with pytest.raises(ProtocolError, match="invalid JSON"):
                await platform.list_models()
    finally:
        server.close()


# --- client settings ------------------------------------------------------------------------


def test_client_settings_for_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOST_HOME", str(tmp_path))
    monkeypatch.delenv("ROOST_CLIENT_CONFIG", raising=False)
    for name in [n for n in os.environ if n.startswith("ROOST_CLIENT__")]:
        monkeypatch.delenv(name)
    (tmp_path / "client.toml").write_text('api_url = "https://roost.example.com:8443/prefix/"\n')
    monkeypatch.setenv("ROOST_CLIENT__TOKEN", "s3cret")
    client = load_client_settings()
    assert client.over_api and not client.remote
    assert client.api_url == "https://roost.example.com:8443/prefix"
    assert client.bearer_token() == "s3cret" and "s3cret" not in repr(client)

    (tmp_path / "client.toml").write_text('api_url = "http://a:8080"\nharness = "control:9091"\n')
    with pytest.raises(
        ConfigError, match=r"client.toml: invalid client configuration: api_url and harness"
    ):
        load_client_settings()
    monkeypatch.delenv("ROOST_CLIENT__TOKEN")
    (tmp_path / "client.toml").write_text('harness = "control:9091"\n')
    monkeypatch.setenv("ROOST_CLIENT__API_URL", "http://a:8080")
    with pytest.raises(ConfigError, match="not both"):
        load_client_settings()
    (tmp_path / "client.toml").unlink()
    for bad in ("a:8080", "ftp://a", "http://", "http://a:99999", "http://a/?q=1"):
        monkeypatch.setenv("ROOST_CLIENT__API_URL", bad)
        with pytest.raises(ConfigError, match="environment: invalid client configuration: api_url"):
            load_client_settings()

    token = tmp_path / "token"
    token.write_text("from-file\n")
    assert ClientSettings(api_url="http://a", token_file=str(token)).bearer_token() == "from-file"
    with pytest.raises(ValueError, match="token and token_file"):
        ClientSettings(api_url="http://a", token="x", token_file=str(token))
    with pytest.raises(ConfigError, match="token_file"):
        ClientSettings(api_url="http://a", token_file=str(tmp_path / "missing")).bearer_token()
    with pytest.raises(ConfigError, match="ca_file"):
        HttpPlatform(ClientSettings(api_url="https://a", ca_file=str(tmp_path / "missing.pem")))
    assert ClientSettings().bearer_token() == "" and not ClientSettings().over_api
