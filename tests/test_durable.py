"""Durable runs on a real Temporal dev server: crash recovery, replay-safe context, human
input, cancellation, retries, idempotent starts."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import make_agent
from conftest import durable_settings
from fakes import FakeLLMServer
from roost.platform import Platform
from roost.protocol import InvalidRequestError

pytestmark = pytest.mark.temporal

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def platform(tmp_path: Path, temporal_env: dict[str, str]) -> AsyncIterator[Platform]:
    async with await Platform.open(durable_settings(tmp_path / "home", temporal_env)) as p:
        yield p


# --- crash recovery --------------------------------------------------------------------

MARKER_TOOLS = """
import os, time
from pathlib import Path

def mark(step: int) -> str:
    \"\"\"Record that this step ran (the test counts the lines).\"\"\"
    with open(os.environ["ROOST_TEST_MARKS"], "a") as f:
        f.write(f"{step}\\n")
    # the test holds step 2 here until it has killed the worker
    while step == 2 and Path(os.environ["ROOST_TEST_BLOCK"]).exists():
        time.sleep(0.05)
    return f"step {step} done"
"""

FIVE_STEPS = """
async def run(ctx, input):
    results = []
    for step in range(5):
        results.append(await ctx.tool("mark", step=step))
    return results
"""


class Worker:
    """`roost worker` in a child process, as a user starts it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "roost", "worker"],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        for line in self.proc.stderr:  # wait for readiness
            if "worker ready" in line:
                return
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"roost worker did not start (exit {self.proc.poll()})")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_env(tmp_path: Path, temporal_env: dict[str, str]) -> Iterator[dict[str, str]]:
    env = {**os.environ, **temporal_env, "ROOST_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    env.pop("ROOST_CONFIG", None)
    env["ROOST_WORKFLOWS__HEARTBEAT_TIMEOUT_S"] = "2"  # notice the dead worker quickly
    env["ROOST_TEST_MARKS"] = str(tmp_path / "marks.txt")
    env["ROOST_TEST_BLOCK"] = str(tmp_path / "block")
    yield env


async def test_a_killed_worker_resumes_without_repeating_completed_calls(
    tmp_path: Path, worker_env: dict[str, str]
) -> None:
    marks, block = Path(worker_env["ROOST_TEST_MARKS"]), Path(worker_env["ROOST_TEST_BLOCK"])
    block.touch()
    settings = durable_settings(
        tmp_path / "home",
        {k: v for k, v in worker_env.items() if k.startswith("ROOST_WORKFLOWS__")},
    )
    # this process only deploys, starts and watches the run: the worker executes it
    async with await Platform.open(settings, worker=False) as client:
        await client.deploy(
            make_agent(tmp_path, "five", FIVE_STEPS, _TOOLS, (), tools=MARKER_TOOLS)
        )
        first = Worker(worker_env)
        second = Worker(worker_env)
        try:
            first.start()
            session, invocation = await client.harness.start("five", None)
            await _until(lambda: marks.exists() and "2\n" in marks.read_text(), 60)
            first.kill()  # SIGKILL in the middle of step 2; steps 0 and 1 are complete
            block.unlink()
            second.start()
            complete = await client.harness.wait(invocation.id, session=session.id, timeout_s=90)
        finally:
            first.stop()
            second.stop()

    assert complete.ok, complete.error
    assert complete.output == [f"step {i} done" for i in range(5)]
    counts = {step: marks.read_text().split().count(str(step)) for step in range(5)}
    # completed calls ran once; the call in flight at the kill ran again (at-least-once)
    assert counts == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1}
    # the session records each step once: retried recording is idempotent
    async with await Platform.open(settings, worker=False) as client:
        nodes = await client.session_nodes(session.id)
    calls = [n.content["body"]["arguments"]["step"] for n in nodes if n.kind == "request"]
    assert calls == [0, 1, 2, 3, 4]
    assert [n.kind for n in nodes].count("complete") == 1


_TOOLS = '[[tools]]\nname = "mark"\nentry = "tools:mark"\n'


async def _until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


# --- replay-safe context ---------------------------------------------------------------

STEPPING = """
import os

def side_effect(path):
    with open(path, "a") as f:
        f.write("x")
    return os.path.getsize(path)

async def run(ctx, input):
    first = await ctx.step(side_effect, input)
    second = await ctx.step(side_effect, input)
    return {"sizes": [first, second], "year": ctx.now().year, "r": ctx.random().randint(1, 6)}
"""


async def test_steps_run_once_and_time_and_randomness_come_from_the_run(
    platform: Platform, tmp_path: Path
) -> None:
    await platform.deploy(make_agent(tmp_path, "stepper", STEPPING, services=()))
    target = tmp_path / "effects.txt"
    seen: list[str] = []

    result = await platform.run("stepper", str(target), on_event=lambda e: seen.append(e.type))

    assert result.ok, result.complete.error
    assert result.output["sizes"] == [1, 2] and target.read_text() == "xx"
    assert result.output["year"] >= 2026 and 1 <= result.output["r"] <= 6
    assert seen.count("step") == 4  # started + finished, per step


async def test_a_step_must_be_a_module_level_function(platform: Platform, tmp_path: Path) -> None:
    code = "async def run(ctx, input):\n    return await ctx.step(lambda: 1)\n"
    await platform.deploy(make_agent(tmp_path, "lambdas", code, services=()))
    result = await platform.run("lambdas", None)
    assert not result.ok and result.complete.error is not None
    assert "module-level function" in result.complete.error.message


# --- human input, cancellation, idempotency ---------------------------------------------

ASKING = """
async def run(ctx, input):
    name = await ctx.ask("What is your name?")
    return f"Hello, {name}!"
"""


async def test_a_run_waits_for_an_answer(platform: Platform, tmp_path: Path) -> None:
    await platform.deploy(make_agent(tmp_path, "asker", ASKING, services=()))
    session, invocation = await platform.harness.start("asker", None)

    async def question() -> str:
        return (await platform.harness.get_run(invocation.id)).question

    deadline = time.monotonic() + 30
    while await question() != "What is your name?":
        assert time.monotonic() < deadline, "the run never asked"
        await asyncio.sleep(0.05)
    await platform.harness.answer(invocation.id, "Ada")

    complete = await platform.harness.wait(invocation.id, session=session.id, timeout_s=30)
    assert complete.output == "Hello, Ada!"
    assert (await platform.harness.get_run(invocation.id)).status == "completed"
    with pytest.raises(InvalidRequestError, match="not waiting for an answer"):
        await platform.harness.answer(invocation.id, "again")
    events = [
        n.content["data"] for n in await platform.session_nodes(session.id) if n.kind == "event"
    ]
    assert [e.get("question") or e.get("answer") for e in events] == ["What is your name?", "Ada"]


async def test_cancel_ends_the_run_and_records_it(platform: Platform, tmp_path: Path) -> None:
    code = "import asyncio\nasync def run(ctx, input):\n    await asyncio.sleep(600)\n"
    await platform.deploy(make_agent(tmp_path, "sleeper", code, services=()))
    session, invocation = await platform.harness.start("sleeper", None)
    await asyncio.sleep(0.5)

    await platform.harness.cancel(invocation.id)
    complete = await platform.harness.wait(invocation.id, session=session.id, timeout_s=30)

    assert not complete.ok and complete.error is not None and complete.error.code == "cancelled"
    assert (await platform.harness.get_run(invocation.id)).status == "cancelled"
    nodes = await platform.session_nodes(session.id)
    assert nodes[-1].kind == "complete" and nodes[-1].content["error"]["code"] == "cancelled"
    with pytest.raises(InvalidRequestError, match="already cancelled"):
        await platform.harness.cancel(invocation.id)


SLOW_TOOLS = """
import time

def slow() -> str:
    time.sleep(4)  # well past the agent's 1 s; short, so the worker's shutdown is quick
    return "too late"
"""


@pytest.mark.parametrize(
    ("name", "code", "timers"),
    [
        # the wait for an answer is the run's one timer (bounded by the run's deadline)
        (
            "waits-for-an-answer",
            "async def run(ctx, input):\n    return await ctx.ask('name?')\n",
            1,
        ),
        ("calls-a-slow-tool", "async def run(ctx, input):\n    return await ctx.tool('slow')\n", 0),
    ],
    ids=["ask", "slow-tool"],
)
async def test_a_run_past_its_timeout_ends_timed_out(
    platform: Platform, tmp_path: Path, name: str, code: str, timers: int
) -> None:
    """The agent's timeout bounds a durable run (a wait for an answer, a slow call) through
    a deadline on the workflow clock: the run ends as timed out and recorded, and the
    deadline costs no durable timer of its own."""
    toml = 'timeout_s = 1\nservices = ["tool"]\n\n[[tools]]\nname = "slow"\nentry = "tools:slow"\n'
    await platform.deploy(make_agent(tmp_path, name, code, toml, (), tools=SLOW_TOOLS))
    started = time.monotonic()
    result = await platform.run(name, None)
    elapsed = time.monotonic() - started

    assert not result.ok and result.complete.error is not None
    assert result.complete.error.code == "timeout"
    assert f"agent {name!r} did not finish within 1s" in result.complete.error.message
    assert elapsed < 10, f"the run took {elapsed:.1f}s to time out"
    nodes = await platform.session_nodes(result.session.id)
    assert nodes[-1].kind == "complete" and nodes[-1].content["error"]["code"] == "timeout"


async def test_starting_the_same_invocation_twice_is_one_run(
    platform: Platform, tmp_path: Path
) -> None:
    code = "async def run(ctx, input):\n    return await ctx.kv.put('k', 'v')\n"
    await platform.deploy(make_agent(tmp_path, "once", code))
    run_id = f"fixed-{uuid.uuid4().hex}"
    first = await platform.run("once", None, run_id=run_id)
    second = await platform.run("once", None, run_id=run_id)
    assert second.session.id == first.session.id
    assert second.output == first.output
    kinds = [n.kind for n in await platform.session_nodes(first.session.id)]
    assert kinds == ["invoke", "request", "response", "complete"]


# --- retries ---------------------------------------------------------------------------


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


async def test_transient_failures_are_retried_and_terminal_ones_are_not(
    platform: Platform, llm: FakeLLMServer, tmp_path: Path
) -> None:
    await platform.add_model(
        name="remote", engine="openai", target="fake-chat", base_url=llm.openai_url
    )
    code = "async def run(ctx, input):\n    return (await ctx.infer(input, model='remote')).message.content\n"
    await platform.deploy(make_agent(tmp_path, "relay", code, services=()))

    llm.fail_next(503, times=2)  # upstream hiccups: retried with backoff
    result = await platform.run("relay", "hello")
    assert result.output == "echo: hello"
    assert llm.count("/v1/chat/completions") == 3

    llm.fail_next(400, times=1)  # a bad request stays bad: not retried
    result = await platform.run("relay", "hello")
    assert not result.ok and result.complete.error is not None
    assert result.complete.error.code == "invalid_request"
    assert llm.count("/v1/chat/completions") == 4


async def test_process_agents_run_durably(
    platform: Platform, llm: FakeLLMServer, tmp_path: Path
) -> None:
    await platform.add_model(
        name="remote", engine="openai", target="fake-chat", base_url=llm.openai_url
    )
    folder = tmp_path / "process-agent"
    shutil.copytree(ROOT / "examples" / "process-agent", folder)
    toml = folder / "agent.toml"
    toml.write_text(toml.read_text().replace('chat = ""', 'chat = "remote"'))
    await platform.deploy(folder)

    first = await platform.run("process-agent", "hi")
    again = await platform.run("process-agent", "again", session=first.session.id)

    assert first.output == {"answer": "echo: hi", "count": 1}, first.complete.error
    assert again.output == {"answer": "echo: again", "count": 2}
    assert again.complete.usage.total_tokens > 0
    requests = [
        (n.content["service"], n.content["op"])
        for n in await platform.session_nodes(first.session.id)
        if n.kind == "request"
    ]
    assert requests[:3] == [("kv", "get"), ("kv", "put"), ("infer", "chat")]
