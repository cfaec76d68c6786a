"""The one-process platform end to end: deploy, run, sessions, fork, failures."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent_helpers import COUNTER, make_agent
from roost.agents import ManifestError
from roost.platform import Platform
from roost.protocol import (
    EventMessage,
    InvalidRequestError,
    RequestMessage,
    ResponseMessage,
    RoostError,
    decode,
    encode,
    subjects,
)
from roost.runtime import InProcessExecutor


async def test_runs_are_recorded_in_order(platform: Platform, tmp_path: Path) -> None:
    await platform.deploy(make_agent(tmp_path, "counter", COUNTER))
    result = await platform.run("counter", None)
    assert result.ok and result.output == 1
    nodes = await platform.session_nodes(result.session.id)
    kinds = [(n.kind, n.content.get("service", ""), n.content.get("op", "")) for n in nodes]
    assert kinds == [
        ("invoke", "", ""),
        ("request", "kv", "get"),
        ("response", "kv", "get"),
        ("request", "kv", "put"),
        ("response", "kv", "put"),
        ("complete", "", ""),
    ]
    # a chain: each node's parent is the one before it
    assert [n.parent for n in nodes[1:]] == [n.id for n in nodes[:-1]]
    assert nodes[-1].content["output"] == 1


async def test_fork_sees_kv_state_of_fork_point(platform: Platform, tmp_path: Path) -> None:
    await platform.deploy(make_agent(tmp_path, "counter", COUNTER))
    first = await platform.run("counter", None)
    session = first.session.name
    assert (await platform.run("counter", None, session=session)).output == 2
    nodes = await platform.session_nodes(session)
    first_complete = next(n for n in nodes if n.kind == "complete")

    branch = await platform.fork(session, first_complete.id[:10], "retry")
    on_fork = await platform.run("counter", None, session=session, branch=branch.name)
    assert on_fork.output == 2  # saw count=1, as at the fork point, not 2
    assert (await platform.run("counter", None, session=session)).output == 3  # main unaffected

    fork_nodes = await platform.session_nodes(session, "retry")
    assert [n.id for n in fork_nodes[: len(nodes) // 2]] == [n.id for n in nodes[: len(nodes) // 2]]

    await platform.promote(session, "retry")
    assert (await platform.get_session(session)).main_branch == "retry"
    assert (await platform.run("counter", None, session=session)).output == 3  # continues retry


async def test_fork_before_any_write_starts_empty(platform: Platform, tmp_path: Path) -> None:
    await platform.deploy(make_agent(tmp_path, "counter", COUNTER))
    first = await platform.run("counter", None)
    invoke = (await platform.session_nodes(first.session.id))[0]
    branch = await platform.fork(first.session.id, invoke.id, None)
    assert (
        await platform.run("counter", None, session=first.session.id, branch=branch.name)
    ).output == 1


async def test_unknown_model_is_a_deploy_error(platform: Platform, tmp_path: Path) -> None:
    folder = make_agent(tmp_path, "picky", COUNTER, '[models]\nchat = "gpt-17"\n')
    with pytest.raises(ManifestError) as info:
        await platform.deploy(folder)
    assert info.value.field == "models.chat"
    assert "unknown chat model 'gpt-17'" in info.value.problem
    assert str(folder / "agent.toml") in str(info.value)


async def test_bad_tools_and_entries_are_deploy_errors(platform: Platform, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no built-in tool 'teleport'") as info:
        await platform.deploy(make_agent(tmp_path, "a", COUNTER, '[[tools]]\nname = "teleport"\n'))
    assert info.value.field == "tools.0.name"
    with pytest.raises(ManifestError, match="has no callable 'nope'") as info:
        await platform.deploy(
            make_agent(tmp_path, "b", COUNTER, '[[tools]]\nname = "t"\nentry = "agent:nope"\n')
        )
    assert info.value.field == "tools.0.entry"
    with pytest.raises(ManifestError, match="importing agent.py failed: SyntaxError"):
        await platform.deploy(make_agent(tmp_path, "c", "def run(:\n"))


async def test_stopped_service_gives_clear_error_fast(platform: Platform, tmp_path: Path) -> None:
    await platform.deploy(make_agent(tmp_path, "counter", COUNTER))
    kv = next(w for w in platform.workers if w.service == "kv")
    await kv.stop()
    started = time.perf_counter()
    result = await platform.run("counter", None)
    # in-process: fails at once; durable: a missing service is transient, so the call is
    # retried with backoff (5 attempts, 7.5 s) before the run fails with the same error
    durable = not isinstance(platform.executor, InProcessExecutor)
    assert time.perf_counter() - started < (15 if durable else 2)
    assert not result.ok and result.complete.error is not None
    assert result.complete.error.code == "no_responders"
    assert "roost.v1.svc.kv" in result.complete.error.message
    # the failed call is recorded too
    last_response = [
        n for n in await platform.session_nodes(result.session.id) if n.kind == "response"
    ]
    assert last_response[-1].content["error"]["code"] == "no_responders"


async def test_garbage_on_the_bus_is_rejected_and_service_keeps_serving(
    platform: Platform, tmp_path: Path
) -> None:
    await platform.deploy(make_agent(tmp_path, "counter", COUNTER))
    for garbage in (b"\x00\xff not json", b'{"kind": "request"}', b'{"kind":"nope"}'):
        reply = decode(
            await platform.bus.request(subjects.service("kv"), garbage, 2), ResponseMessage
        )
        assert not reply.ok and reply.error is not None and reply.error.code == "invalid_message"
    bad_body = RequestMessage(service="kv", op="put", body={"key": 3}, agent="counter", session="s")
    reply = decode(
        await platform.bus.request(subjects.service("kv"), encode(bad_body), 2), ResponseMessage
    )
    assert reply.error is not None and reply.error.code == "invalid_request"
    assert (await platform.run("counter", None)).output == 1


async def test_agent_errors_and_timeouts_end_the_run_cleanly(
    platform: Platform, tmp_path: Path
) -> None:
    await platform.deploy(
        make_agent(tmp_path, "crash", "async def run(ctx, input):\n    raise KeyError('boom')\n")
    )
    result = await platform.run("crash", None)
    assert not result.ok and result.complete.error is not None
    assert result.complete.error.message == "KeyError: 'boom'"

    await platform.deploy(
        make_agent(
            tmp_path,
            "sleepy",
            "import asyncio\nasync def run(ctx, input):\n    await asyncio.sleep(30)\n",
            "timeout_s = 0.3\n",
        )
    )
    started = time.perf_counter()
    result = await platform.run("sleepy", None)
    assert time.perf_counter() - started < 5
    assert result.complete.error is not None and result.complete.error.code == "timeout"
    assert "0.3s" in result.complete.error.message


async def test_unknown_agent(platform: Platform) -> None:
    from roost.protocol import NotFoundError

    with pytest.raises(NotFoundError, match="agent 'ghost' is not deployed"):
        await platform.run("ghost", None)


async def test_agents_call_agents_and_loops_are_stopped(platform: Platform, tmp_path: Path) -> None:
    await platform.deploy(make_agent(tmp_path, "counter", COUNTER))
    await platform.deploy(
        make_agent(
            tmp_path,
            "caller",
            "async def run(ctx, input):\n    return [await ctx.call_agent('counter', None) for _ in range(2)]\n",
            services=("agent",),
        )
    )
    result = await platform.run("caller", None)
    assert result.output == [1, 1]  # each call is a new session of the callee

    await platform.deploy(
        make_agent(
            tmp_path,
            "narcissus",
            "async def run(ctx, input):\n    return await ctx.call_agent('narcissus', input)\n",
            services=("agent",),
        )
    )
    result = await asyncio.wait_for(platform.run("narcissus", None), 30)
    assert not result.ok and result.complete.error is not None
    assert "deeper than 8" in result.complete.error.message


async def test_progress_events_reach_the_caller_and_the_dag(
    platform: Platform, tmp_path: Path
) -> None:
    await platform.deploy(
        make_agent(
            tmp_path,
            "chatty",
            "async def run(ctx, input):\n    for i in range(3):\n        await ctx.emit(f'step {i}', i=i)\n    return 'done'\n",
        )
    )
    seen = []
    result = await platform.run("chatty", None, on_event=lambda e: seen.append(e.data["message"]))
    assert seen == ["step 0", "step 1", "step 2"]
    events = [n for n in await platform.session_nodes(result.session.id) if n.kind == "event"]
    assert [e.content["data"]["i"] for e in events] == [0, 1, 2]


async def test_redeploy_makes_a_new_version_with_new_code(
    platform: Platform, tmp_path: Path
) -> None:
    folder = make_agent(tmp_path, "v", "async def run(ctx, input):\n    return 'one'\n")
    assert (await platform.deploy(folder)).version == 1
    assert (await platform.run("v", None)).output == "one"
    (folder / "agent.py").write_text("async def run(ctx, input):\n    return 'two'\n")
    assert (await platform.deploy(folder)).version == 2
    assert (await platform.run("v", None)).output == "two"
    assert [a.name for a in await platform.list_agents()] == ["v"]


async def test_an_agent_asks_and_the_answer_resumes_it(platform: Platform, tmp_path: Path) -> None:
    code = "async def run(ctx, input):\n    return 'hi ' + await ctx.ask('name?', timeout=20)\n"
    await platform.deploy(make_agent(tmp_path, "asker", code))
    answered = []

    async def on_event(event: EventMessage) -> None:
        if event.type == "question":  # what `roost agent run` does at a terminal
            await platform.harness.answer(event.correlation_id, "Ada")
            answered.append(event.data["question"])

    result = await asyncio.wait_for(platform.run("asker", None, on_event=on_event), 30)
    assert answered == ["name?"] and result.output == "hi Ada"
    with pytest.raises(RoostError, match="not waiting for an answer"):
        await platform.harness.answer(result.complete.correlation_id, "again")


async def test_a_run_keeps_the_tools_of_the_version_it_started_with(
    platform: Platform, tmp_path: Path
) -> None:
    code = (
        "async def run(ctx, input):\n"
        "    first = await ctx.tool('which')\n"
        "    await ctx.ask('go on?', timeout=20)\n"
        "    return [first, await ctx.tool('which')]\n"
    )
    folder = make_agent(
        tmp_path,
        "pinned",
        code,
        '[[tools]]\nname = "which"\nentry = "agent:which"\n',
        services=("tool",),
    )
    with (folder / "agent.py").open("a") as f:
        f.write("def which() -> str:\n    return 'one'\n")
    await platform.deploy(folder)

    async def on_event(event: EventMessage) -> None:
        if event.type == "question":  # redeploy while the run waits, then let it go on
            (folder / "agent.py").write_text(
                (folder / "agent.py").read_text().replace("'one'", "'two'")
            )
            await platform.deploy(folder)
            await platform.harness.answer(event.correlation_id, "yes")

    result = await asyncio.wait_for(platform.run("pinned", None, on_event=on_event), 30)
    assert result.output == ["one", "one"]  # not the redeployed tool, mid-run
    assert (await platform.get_agent("pinned")).version == 2

    async def go_on(event: EventMessage) -> None:
        if event.type == "question":
            await platform.harness.answer(event.correlation_id, "yes")

    result = await asyncio.wait_for(platform.run("pinned", None, on_event=go_on), 30)
    assert result.output == ["two", "two"]  # a new run uses the new version


@pytest.mark.parametrize(
    "executor", ["inprocess", pytest.param("temporal", marks=pytest.mark.temporal)]
)
async def test_events_reach_the_dag_through_the_stream_with_projection(
    tmp_path: Path, request: pytest.FixtureRequest, executor: str
) -> None:
    """record_events = "projection": runs publish events to the durable stream and the
    projection (in-process on the memory bus) writes them into the DAG, each once."""
    import asyncio

    from conftest import durable_settings
    from roost.config import Settings

    runtime = {"record_events": "projection"}
    if executor == "inprocess":
        settings = Settings(home=tmp_path / "h", workflows={"engine": "inprocess"}, runtime=runtime)
    else:
        settings = durable_settings(tmp_path / "h", request.getfixturevalue("temporal_env"))
        settings = settings.model_copy(
            update={"runtime": settings.runtime.model_copy(update=runtime)}
        )
    code = "async def run(ctx, input):\n    for i in range(3):\n        await ctx.emit(f'step {i}', i=i)\n    return 'done'\n"
    async with await Platform.open(settings) as platform:
        assert platform.projection is not None
        await platform.deploy(make_agent(tmp_path, "chatty", code))
        seen: list[str] = []
        result = await platform.run(
            "chatty", None, on_event=lambda e: seen.append(e.data["message"])
        )
        assert seen == ["step 0", "step 1", "step 2"]  # live, as before
        for _ in range(100):  # the durable copy arrives shortly after
            nodes = await platform.session_nodes(result.session.id)
            events = [n for n in nodes if n.kind == "event"]
            # The node is committed a moment before the projection counts it.
            if len(events) == 3 and platform.projection.recorded >= 3:
                break
            await asyncio.sleep(0.05)
        assert [e.content["data"]["i"] for e in events] == [0, 1, 2]
        assert platform.projection.recorded == 3


async def test_a_branch_without_a_session_is_refused_in_the_api_s_terms(
    platform: Platform, tmp_path: Path
) -> None:
    await platform.deploy(make_agent(tmp_path, "counter", COUNTER))
    with pytest.raises(InvalidRequestError, match="branch 'b' without a session") as caught:
        await platform.run("counter", "x", branch="b")
    assert "--" not in str(caught.value)  # the platform speaks no CLI flags
