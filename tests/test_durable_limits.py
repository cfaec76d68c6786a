"""Durable runs never hang on what Temporal cannot carry or on a failing workflow task: a
value over the durable limit fails its call at once with ``payload_too_large`` (the agent
may handle it and go on), an output over it fails the run with that cause, and a workflow
task that raises fails the run within seconds instead of being retried forever. On the
test session's real Temporal server."""

from __future__ import annotations

import time
from pathlib import Path

from agent_helpers import make_agent
from conftest import durable_settings
from roost.platform import Platform
from roost.protocol import ErrorCode, new_id
from roost.workflows import TemporalExecutor
from roost.workflows._workflow import WORKFLOW_NAME

STORES_BIG = """
async def run(ctx, input):
    if input == "catch":
        try:
            await ctx.kv.put("big", b"x" * 5_000_000)
        except Exception as exc:
            await ctx.kv.put("small", b"fine")
            return {"caught": getattr(exc, "code", ""), "small": await ctx.kv.get_text("small")}
    if input == "output":
        return "y" * 3_000_000
    await ctx.kv.put("big", b"x" * 5_000_000)
    return "stored"
"""


async def test_values_over_the_durable_limit_fail_at_once_and_clearly(
    tmp_path: Path, temporal_env: dict[str, str]
) -> None:
    async with await Platform.open(durable_settings(tmp_path / "home", temporal_env)) as platform:
        await platform.deploy(make_agent(tmp_path / "agents", "big", STORES_BIG))
        for given, cause in (("put", "the kv.put request"), ("output", "the run's output")):
            began = time.monotonic()
            result = await platform.run("big", given, timeout_s=60)
            assert time.monotonic() - began < 10, given
            error = result.complete.error
            assert not result.ok and error is not None, given
            assert error.code == ErrorCode.PAYLOAD_TOO_LARGE, error
            assert cause in error.message and "MB" in error.message, error.message
        # the agent may handle it and go on: the run is not broken by it
        handled = await platform.run("big", "catch", timeout_s=60)
        assert handled.ok and handled.output == {"caught": "payload_too_large", "small": "fine"}


async def test_a_failing_workflow_task_fails_the_run_within_seconds(
    tmp_path: Path, temporal_env: dict[str, str]
) -> None:
    """Workflow code that raises (here: a run input it cannot read, as a bug would) fails
    the workflow with the cause, instead of its task being retried forever."""
    async with await Platform.open(durable_settings(tmp_path / "home", temporal_env)) as platform:
        executor = platform.executor
        assert isinstance(executor, TemporalExecutor)
        began = time.monotonic()
        run_id = f"broken-{new_id()}"
        await executor.client.start_workflow(
            WORKFLOW_NAME, {"invocation": "not an invocation"}, id=run_id,
            task_queue=executor.task_queue,
        )  # fmt: skip
        complete = await executor.wait(run_id, 30)
        assert time.monotonic() - began < 10
        assert not complete.ok and complete.error is not None
        assert "the run failed" in complete.error.message
        assert "invocation" in complete.error.message.lower(), complete.error.message
