"""A2A v1.0 from the API server, driven by the official a2a-sdk client over a real uvicorn:
agent cards, messages and streams as runs, input-required and its answer, tasks by id,
cancelling, listing, and that an outsider or bad JSON-RPC gets a clear refusal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.helpers import get_artifact_text, get_message_text, new_data_message, new_text_message
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskState,
    UnsupportedOperationError,
)

from api_helpers import TOKEN, Api, api_server, deploy

WITH_TOOLS = 'description = "Chats and asks"\nversion = "2.1.0"\n' + (
    'tools = [{name = "lookup", entry = "tools:lookup", description = "Looks things up"}]\n'
)
TOOLS = "def lookup(q: str) -> str:\n    return q\n"


@pytest.fixture
async def api(tmp_path: Path) -> Any:
    async with api_server(tmp_path / "home") as server:
        async with server.client() as client:
            await deploy(client, tmp_path, "chatty")
        yield server


@asynccontextmanager
async def a2a_client(
    api: Api, agent: str = "chatty", *, streaming: bool = False
) -> AsyncIterator[Client]:
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30.0)
    async with http:
        card = await A2ACardResolver(http, f"{api.url}/a2a/{agent}").get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)
        yield client


def user(
    text: str = "", *, data: Any = None, task_id: str = "", context_id: str = ""
) -> SendMessageRequest:
    message = (
        new_data_message(data, role=Role.ROLE_USER)
        if data is not None
        else new_text_message(text, role=Role.ROLE_USER)
    )
    if task_id:
        message.task_id = task_id
    if context_id:
        message.context_id = context_id
    return SendMessageRequest(message=message)


async def send(client: Client, request: SendMessageRequest) -> Task:
    """The task a blocking SendMessage answers."""
    responses = [r async for r in client.send_message(request)]
    assert len(responses) == 1 and responses[0].HasField("task"), responses
    return responses[0].task


async def stream(client: Client, request: SendMessageRequest) -> list[StreamResponse]:
    return [r async for r in client.send_message(request)]


def states(events: list[StreamResponse]) -> list[str]:
    """The task state each event of a stream reports (``artifact`` for artifact updates)."""
    out = []
    for event in events:
        if event.HasField("task"):
            out.append(TaskState.Name(event.task.status.state))
        elif event.HasField("status_update"):
            out.append(TaskState.Name(event.status_update.status.state))
        elif event.HasField("artifact_update"):
            out.append("artifact")
    return out


async def until_waiting(api: Api, run_id: str) -> None:
    for _ in range(200):
        if (await api.platform.harness.get_run(run_id)).question:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} never asked")


# --- the agent card ---------------------------------------------------------------------


async def test_each_agent_publishes_a_card_from_its_manifest(api: Api, tmp_path: Path) -> None:
    from agent_helpers import make_agent
    from roost.agents import pack_folder

    folder = make_agent(tmp_path / "t", "asker", "async def run(ctx, input):\n    return 1\n",
                        WITH_TOOLS, services=(), tools=TOOLS)  # fmt: skip
    async with api.client() as http:
        deployed = await http.post(
            "/api/v1/agents", content=pack_folder(folder),
            headers={"Content-Type": "application/gzip"},
        )  # fmt: skip
        assert deployed.status_code == 201, deployed.text
    async with api.client() as http, api.client(token=None) as anyone:
        card = await A2ACardResolver(http, f"{api.url}/a2a/asker").get_agent_card()
        missing = await http.get("/a2a/nobody/.well-known/agent-card.json")
        refused = await anyone.get("/a2a/asker/.well-known/agent-card.json")
    assert (card.name, card.description, card.version) == (
        "asker",
        "Chats and asks",
        "2.1.0+deploy.1",
    )
    assert card.capabilities.streaming and not card.capabilities.push_notifications
    [interface] = card.supported_interfaces
    assert interface.url == f"{api.url}/a2a/asker"
    assert (interface.protocol_binding, interface.protocol_version) == ("JSONRPC", "1.0")
    assert [s.name for s in card.skills] == ["asker", "lookup"]
    assert card.skills[1].description == "Looks things up"
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer"
    assert "bearer" in card.security_requirements[0].schemes
    assert missing.status_code == 404
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"


# --- messages, streams and tasks ----------------------------------------------------------


async def test_a_message_runs_the_agent_and_its_context_is_the_session(api: Api) -> None:
    async with a2a_client(api) as client:
        task = await send(client, user("hi"))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert get_artifact_text(task.artifacts[0]) == "echo: hi"
        run = await api.platform.harness.get_run(task.id)  # the task is the run
        assert (run.status, run.session) == ("completed", task.context_id)
        roles = [m.role for m in task.history]
        assert roles == [Role.ROLE_USER, Role.ROLE_AGENT]
        assert get_message_text(task.history[0]) == "hi"

        again = await send(client, user("more", context_id=task.context_id))
        assert again.id != task.id and again.context_id == task.context_id
        assert (await api.platform.harness.get_run(again.id)).session == task.context_id
        nodes = await api.platform.session_nodes(task.context_id)
        assert [n.kind for n in nodes].count("invoke") == 2

        fetched = await client.get_task(GetTaskRequest(id=task.id))
        assert fetched.status.state == TaskState.TASK_STATE_COMPLETED
        assert get_artifact_text(fetched.artifacts[0]) == "echo: hi"
        short = await client.get_task(GetTaskRequest(id=task.id, history_length=1))
        assert len(short.history) == 1

        with pytest.raises(TaskNotFoundError):
            await client.get_task(GetTaskRequest(id="no-such-run"))
        with pytest.raises(UnsupportedOperationError):  # a finished task takes no message
            await send(client, user("late", task_id=task.id))


async def test_a_stream_follows_the_task_to_completion(api: Api) -> None:
    async with a2a_client(api, streaming=True) as client:
        events = await stream(client, user("streamed"))
    assert states(events) == [
        "TASK_STATE_WORKING", "TASK_STATE_WORKING", "TASK_STATE_WORKING",
        "artifact", "TASK_STATE_COMPLETED",
    ]  # fmt: skip
    first = events[0].task
    assert get_message_text(first.history[0]) == "streamed"
    progress = [get_message_text(e.status_update.status.message) for e in events[1:3]]
    assert progress == ["one", "two"]
    assert get_artifact_text(events[3].artifact_update.artifact) == "echo: streamed"
    assert {e.status_update.task_id for e in events[1:3]} == {first.id}


async def test_input_required_is_answered_by_the_next_message_on_the_task(api: Api) -> None:
    async with a2a_client(api) as client:
        task = await send(client, user(data={"ask": "your name?"}))
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert get_message_text(task.status.message) == "your name?"
        fetched = await client.get_task(GetTaskRequest(id=task.id))
        assert fetched.status.state == TaskState.TASK_STATE_INPUT_REQUIRED

        done = await send(client, user("bob", task_id=task.id, context_id=task.context_id))
        assert done.id == task.id
        assert done.status.state == TaskState.TASK_STATE_COMPLETED
        assert get_artifact_text(done.artifacts[0]) == "you said bob"
        said = [(m.role, get_message_text(m)) for m in done.history]
        assert said[1:] == [
            (Role.ROLE_AGENT, "your name?"), (Role.ROLE_USER, "bob"), (Role.ROLE_AGENT, "you said bob"),
        ]  # fmt: skip


async def test_a_stream_stops_at_input_required_and_the_answer_streams_on(api: Api) -> None:
    async with a2a_client(api, streaming=True) as client:
        asked = await stream(client, user(data={"ask": "colour?"}))
        assert states(asked)[-1] == "TASK_STATE_INPUT_REQUIRED"
        question = asked[-1].status_update
        assert get_message_text(question.status.message) == "colour?"
        answered = await stream(client, user("blue", task_id=question.task_id))
    assert states(answered) == ["TASK_STATE_WORKING", "artifact", "TASK_STATE_COMPLETED"]
    assert get_artifact_text(answered[1].artifact_update.artifact) == "you said blue"


async def test_subscribe_follows_a_waiting_task_from_its_snapshot(api: Api) -> None:
    async with a2a_client(api, streaming=True) as client:
        request = user(data={"ask": "ready?"})
        request.configuration.CopyFrom(SendMessageConfiguration(return_immediately=True))
        [first] = [r async for r in client.send_message(request)][:1]
        task_id = first.task.id
        await until_waiting(api, task_id)

        async def answer_soon() -> None:
            await asyncio.sleep(0.3)
            await api.platform.harness.answer(task_id, "yes")

        answering = asyncio.create_task(answer_soon())
        events = [e async for e in client.subscribe(SubscribeToTaskRequest(id=task_id))]
        await answering
    assert states(events) == ["TASK_STATE_INPUT_REQUIRED", "artifact", "TASK_STATE_COMPLETED"]
    assert get_artifact_text(events[1].artifact_update.artifact) == "you said yes"


async def test_cancel_a_task(api: Api) -> None:
    async with a2a_client(api) as client:
        request = user(data={"ask": "wait"})
        request.configuration.return_immediately = True
        task = await send(client, request)
        assert task.status.state in (
            TaskState.TASK_STATE_WORKING,
            TaskState.TASK_STATE_INPUT_REQUIRED,
        )
        await until_waiting(api, task.id)
        cancelled = await client.cancel_task(CancelTaskRequest(id=task.id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        assert (await api.platform.harness.get_run(task.id)).status == "cancelled"
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=task.id))
    async with a2a_client(api, streaming=True) as client:
        with pytest.raises(UnsupportedOperationError):  # nothing more to follow
            [e async for e in client.subscribe(SubscribeToTaskRequest(id=task.id))]


async def test_list_the_agents_tasks(api: Api, tmp_path: Path) -> None:
    async with api.client() as http:
        await deploy(http, tmp_path / "other", "other")
    async with a2a_client(api) as client:
        first = await send(client, user("a"))
        second = await send(client, user("b", context_id=first.context_id))
        await send(client, user("c"))
        async with a2a_client(api, "other") as other:
            await send(other, user("elsewhere"))
            with pytest.raises(TaskNotFoundError):  # a task of another agent's endpoint
                await other.get_task(GetTaskRequest(id=first.id))
        listed = await client.list_tasks(ListTasksRequest())
        assert listed.total_size == 3 and len(listed.tasks) == 3
        assert not listed.tasks[0].artifacts  # unless asked for
        in_context = await client.list_tasks(ListTasksRequest(context_id=first.context_id))
        assert {t.id for t in in_context.tasks} == {first.id, second.id}
        page = await client.list_tasks(ListTasksRequest(page_size=2, include_artifacts=True))
        assert len(page.tasks) == 2 and page.next_page_token and page.tasks[0].artifacts
        rest = await client.list_tasks(
            ListTasksRequest(page_size=2, page_token=page.next_page_token)
        )
        assert len(rest.tasks) == 1 and not rest.next_page_token


# --- refusals -------------------------------------------------------------------------------

SEND: dict[str, Any] = {
    "jsonrpc": "2.0", "id": 1, "method": "SendMessage",
    "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}},
}  # fmt: skip
V1 = {"A2A-Version": "1.0"}


async def test_an_outsider_is_refused(api: Api) -> None:
    async with (
        api.client(token=None) as anyone,
        api.client(token="wrong-token-0123456789") as wrong,
    ):
        for client in (anyone, wrong):
            reply = await client.post("/a2a/chatty", json=SEND, headers=V1)
            assert reply.status_code == 401
            assert reply.headers["www-authenticate"] == "Bearer"
    assert await api.platform.harness.list_runs() == []


async def test_bad_json_rpc_gets_a_json_rpc_error_never_a_500(api: Api) -> None:
    wrong_params = {**SEND, "params": {"message": "not a message"}}
    no_parts = {**SEND, "params": {"message": {"messageId": "m", "role": "ROLE_USER"}}}
    as_agent = {**SEND, "params": {"message": {**SEND["params"]["message"], "role": "ROLE_AGENT"}}}
    file_part = {
        **SEND,
        "params": {"message": {**SEND["params"]["message"], "parts": [{"url": "http://x"}]}},
    }
    cases: list[tuple[dict[str, Any], int]] = [
        ({"content": b"{not json"}, -32700),
        ({"content": b"\xff\xfe\xfa"}, -32700),
        ({"json": [SEND, SEND]}, -32600),
        ({"json": {"id": 2, "method": "SendMessage"}}, -32600),
        ({"json": {**SEND, "method": "Nope"}}, -32601),
        ({"json": wrong_params}, -32602),
        ({"json": no_parts}, -32602),
        ({"json": as_agent}, -32602),
        ({"json": file_part}, -32005),
        ({"json": {**SEND, "method": "GetTask", "params": {"id": "../x"}}}, -32001),
        ({"json": {**SEND, "method": "CancelTask", "params": {}}}, -32602),
        ({"json": {**SEND, "method": "CreateTaskPushNotificationConfig", "params": {}}}, -32003),
        ({"json": {**SEND, "params": {**SEND["params"], "message": {
            **SEND["params"]["message"], "contextId": "no-such-session"}}}}, -32602),
    ]  # fmt: skip
    async with api.client() as client:
        for kwargs, code in cases:
            reply = await client.post("/a2a/chatty", headers=V1, **kwargs)
            assert reply.status_code == 200, (kwargs, reply.text)
            assert reply.json()["error"]["code"] == code, (kwargs, reply.json())
        unversioned = await client.post("/a2a/chatty", json=SEND)
        assert unversioned.json()["error"]["code"] == -32009
        unknown_agent = await client.post("/a2a/nobody", json=SEND, headers=V1)
        assert unknown_agent.status_code == 404
        ok = await client.post("/a2a/chatty", json=SEND, headers=V1)
        assert ok.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


# --- following a run ----------------------------------------------------------------------


class _Silent:
    """A harness whose live events never arrive: only the DAG tells what the run did."""

    async def wait(
        self, run_id: str, *, session: str, timeout_s: Any = None, on_event: Any = None
    ) -> Any:
        await asyncio.Event().wait()


class _Recorded:
    harness = _Silent()

    def __init__(self) -> None:
        self.nodes: list[Any] = []

    async def session_nodes(self, session: str, branch: str | None = None) -> list[Any]:
        return list(self.nodes)

    def record(self, event_id: str, kind: str, **data: Any) -> None:
        from roost.stores import Node

        content = {"id": event_id, "type": kind, "correlation_id": "r1", "data": data}
        self.nodes.append(
            Node(event_id, "s1", "main", None, "event", content, 0.0, len(self.nodes))
        )


async def test_following_finds_what_the_live_subscription_missed() -> None:
    from roost.runtime import RunInfo
    from roost.server._a2a import follow

    platform = _Recorded()
    platform.record("e1", "progress", message="before")
    platform.record("e2", "progress", message="after")
    info = RunInfo(
        id="r1", agent="chatty", session="s1", branch="main", status="running", started_at=0.0
    )
    events = follow(platform, info, after="e1")  # type: ignore[arg-type]
    try:
        assert (await anext(events)).id == "e2"
        # emitted while the subscription was starting: the bus never delivers it
        platform.record("e3", "question", question="still there?")
        found = await asyncio.wait_for(anext(events), 5.0)
        assert (found.id, found.type, found.text) == ("e3", "question", "still there?")
    finally:
        await events.aclose()
