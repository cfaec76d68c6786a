"""Executors run invocations. The in-process executor is non-durable; a durable executor
(Temporal) implements the same :class:`Executor` contract."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from roost.agents import AgentManifest, parse_manifest
from roost.protocol import (
    AgentError,
    CompleteMessage,
    ErrorCode,
    ErrorInfo,
    InvalidRequestError,
    InvokeMessage,
    NoRespondersError,
    NotFoundError,
    RoostError,
    ServiceTimeoutError,
    Usage,
    subjects,
)
from roost.runtime._context import AgentContext
from roost.runtime._dispatch import BusDispatcher
from roost.runtime._runtimes import AgentRuntime
from roost.runtime._wiring import AgentResolver, HistoryLoader, RunWiring
from roost.stores import AgentRecord, Node

log = logging.getLogger("roost.runtime")


RunStatus = Literal["running", "completed", "failed", "cancelled", "timed_out", "unknown"]


@dataclass(frozen=True)
class RunInfo:
    """A run as an executor knows it (``roost run list`` / ``roost run get``)."""

    id: str
    agent: str
    session: str
    branch: str
    status: RunStatus
    started_at: float
    closed_at: float | None = None
    question: str = ""
    """The question the run waits on (``ctx.ask``), if any."""


class Executor(Protocol):
    """Runs invocations to completion. Agent failures never raise here: the
    :class:`CompleteMessage` carries them. ``start`` is idempotent per invocation id."""

    async def start(self, invocation: InvokeMessage) -> None:
        """Begin running ``invocation`` (returns once the run is accepted)."""
        ...

    async def wait(self, run_id: str, timeout: float | None = None) -> CompleteMessage:
        """The completion of run ``run_id``, waiting up to ``timeout`` seconds for it."""
        ...

    async def execute(self, invocation: InvokeMessage) -> CompleteMessage:
        """``start`` then ``wait``."""
        ...

    async def cancel(self, run_id: str) -> None: ...

    async def answer(self, run_id: str, text: str) -> None:
        """Deliver the answer to the question run ``run_id`` asked with ``ctx.ask``."""
        ...

    async def get_run(self, run_id: str) -> RunInfo: ...

    async def list_runs(self, *, limit: int = 50) -> list[RunInfo]: ...

    async def close(self) -> None: ...


class InProcessExecutor:
    """Runs agents in this process: fast, simple, not durable (a crash loses the run)."""

    def __init__(self, wiring: RunWiring) -> None:
        self.wiring = wiring
        self.keep_finished = 200
        self._runs: dict[str, _LocalRun] = {}

    async def start(self, invocation: InvokeMessage) -> None:
        if invocation.id in self._runs:
            return
        info = RunInfo(
            id=invocation.id,
            agent=invocation.agent,
            session=invocation.session,
            branch=invocation.branch,
            status="running",
            started_at=time.time(),
        )
        task = asyncio.create_task(self._execute(invocation), name=f"run {invocation.id}")
        self._runs[invocation.id] = _LocalRun(info, task)
        task.add_done_callback(lambda t: self._finished(invocation.id, t))
        # let the task enter its body, so a cancel that follows at once is caught there
        # (a task cancelled before its first step never runs, and records no completion)
        await asyncio.sleep(0)

    def _finished(self, run_id: str, task: asyncio.Task[CompleteMessage]) -> None:
        run = self._runs[run_id]
        status: RunStatus = "cancelled"
        if not task.cancelled() and task.exception() is None:
            error = task.result().error
            status = "completed" if error is None else _status_of(error.code)
        run.info = dataclasses.replace(run.info, status=status, closed_at=time.time())
        # keep the latest finished runs only: this executor's memory is its run list
        finished = [k for k, r in self._runs.items() if r.task.done()]
        for key in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._runs[key]

    async def wait(self, run_id: str, timeout: float | None = None) -> CompleteMessage:
        run = self._run(run_id)
        try:
            return await asyncio.wait_for(asyncio.shield(run.task), timeout)
        except asyncio.CancelledError:
            if not run.task.cancelled():
                raise  # the waiter was cancelled, not the run
            raise RoostError(f"run {run_id} was cancelled", code=ErrorCode.CANCELLED) from None
        except TimeoutError:
            raise ServiceTimeoutError(
                f"run {run_id} did not finish within {timeout:g}s; it is still running"
            ) from None

    async def execute(self, invocation: InvokeMessage) -> CompleteMessage:
        await self.start(invocation)
        return await self.wait(invocation.id)

    async def cancel(self, run_id: str) -> None:
        self._run(run_id).task.cancel()

    async def answer(self, run_id: str, text: str) -> None:
        self._run(run_id)
        try:
            reply = await self.wiring.bus.request(subjects.run_answer(run_id), text.encode(), 5.0)
        except NoRespondersError:
            raise InvalidRequestError(f"run {run_id} is not waiting for an answer") from None
        if reply != b"ok":
            raise InvalidRequestError(f"run {run_id}: {reply.decode()}")

    async def get_run(self, run_id: str) -> RunInfo:
        run = self._run(run_id)
        if run.dispatcher is not None and run.dispatcher.question:
            return dataclasses.replace(run.info, question=run.dispatcher.question)
        return run.info

    async def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        runs = sorted((r.info for r in self._runs.values()), key=lambda i: -i.started_at)
        return runs[:limit]

    def _run(self, run_id: str) -> _LocalRun:
        run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(
                f"no run {run_id!r} in this process (in-process runs live only in the process "
                "that started them; durable runs are listed by every roost process)"
            )
        return run

    async def _execute(self, invocation: InvokeMessage) -> CompleteMessage:
        started = time.perf_counter()
        wiring = self.wiring
        dispatcher = wiring.dispatcher(invocation)
        self._runs[invocation.id].dispatcher = dispatcher
        output: Any = None
        error: ErrorInfo | None = None
        try:  # from the first await: a cancel at any point still ends in a completion
            invoke_node = await wiring.recorder.record(invocation)
            record = await wiring.resolve_agent(invocation.agent, invocation.agent_version)
            manifest = parse_manifest(record.manifest, f"{record.path}/agent.toml")
            dispatcher.agent_version = record.version
            ctx = await self._context(invocation, invoke_node, dispatcher, manifest)
            output, error = await run_agent(wiring.runtimes, ctx, record, manifest)
        except RoostError as exc:
            error = exc.to_info()
        except asyncio.CancelledError:
            # The run's own task: cancelling it ends the run with a recorded completion.
            error = ErrorInfo(code=ErrorCode.CANCELLED, message="the run was cancelled")
        return await self._complete(invocation, started, dispatcher, output, error)

    async def _context(
        self,
        invocation: InvokeMessage,
        invoke_node: Node | None,
        dispatcher: BusDispatcher,
        manifest: AgentManifest,
    ) -> AgentContext:
        load_history, defaults = self.wiring.load_history, self.wiring.defaults
        history = await load_history(invocation, invoke_node) if load_history else []
        return AgentContext(
            invocation,
            dispatcher,
            chat_model=manifest.models.chat or defaults.chat_model,
            embedding_model=manifest.models.embedding or defaults.embedding_model,
            request_timeout_s=defaults.request_timeout_s,
            infer_timeout_s=defaults.infer_timeout_s,
            history=history,
        )

    async def _complete(
        self,
        invocation: InvokeMessage,
        started: float,
        dispatcher: BusDispatcher,
        output: Any,
        error: ErrorInfo | None,
    ) -> CompleteMessage:
        duration_ms = (time.perf_counter() - started) * 1000
        complete = completion(invocation, output, error, dispatcher.usage, duration_ms)
        await self.wiring.recorder.record(complete)
        return complete

    async def close(self) -> None:
        pending = [r.task for r in self._runs.values() if not r.task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def run_agent(
    runtimes: Mapping[str, AgentRuntime],
    ctx: AgentContext,
    record: AgentRecord,
    manifest: AgentManifest,
) -> tuple[Any, ErrorInfo | None]:
    """Run one invocation on its runtime within the run's timeout: ``(output, error)``.

    Shared by every executor, so agents fail the same way however they run. Cancellation
    propagates; every other failure becomes the error of the completion.
    """
    invocation = ctx.invocation
    try:
        runtime = runtimes.get(manifest.runtime)
        if runtime is None:
            raise AgentError(f"no runtime {manifest.runtime!r} is available here")
        timeout = manifest.timeout_s or invocation.timeout_s
        try:
            return await asyncio.wait_for(runtime.run(ctx, record, manifest), timeout), None
        except TimeoutError:
            raise ServiceTimeoutError(
                f"agent {invocation.agent!r} did not finish within {timeout:g}s"
            ) from None
    except RoostError as exc:
        return None, exc.to_info()
    except Exception as exc:
        log.exception("agent %s failed", invocation.agent)
        return None, ErrorInfo(code=AgentError.code, message=f"{type(exc).__name__}: {exc}")


def completion(
    invocation: InvokeMessage,
    output: Any,
    error: ErrorInfo | None,
    usage: Usage,
    duration_ms: float,
    **envelope: Any,
) -> CompleteMessage:
    """The :class:`CompleteMessage` ending ``invocation`` (``envelope``: id, timestamp)."""
    return CompleteMessage(
        session=invocation.session,
        branch=invocation.branch,
        correlation_id=invocation.id,
        trace=invocation.trace,
        agent=invocation.agent,
        ok=error is None,
        output=_jsonable(output) if error is None else None,
        error=error,
        usage=usage,
        duration_ms=duration_ms,
        **envelope,
    )


@dataclass
class _LocalRun:
    info: RunInfo
    task: asyncio.Task[CompleteMessage]
    dispatcher: BusDispatcher | None = None


def _status_of(code: str) -> RunStatus:
    if code == ErrorCode.CANCELLED:
        return "cancelled"
    return "timed_out" if code == ErrorCode.TIMEOUT else "failed"


def _jsonable(value: Any) -> Any:
    import msgspec

    try:
        return msgspec.to_builtins(value)
    except TypeError:
        return str(value)


__all__ = [
    "AgentResolver",
    "Executor",
    "HistoryLoader",
    "InProcessExecutor",
    "RunInfo",
    "RunStatus",
]
