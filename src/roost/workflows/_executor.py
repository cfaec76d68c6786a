"""The durable executor: agent runs as Temporal workflows, behind roost's executor contract."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import msgspec
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import CancelledError, TerminatedError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from roost.protocol import (
    CompleteMessage,
    ErrorCode,
    ErrorInfo,
    InvalidRequestError,
    InvokeMessage,
    NotFoundError,
    ServiceTimeoutError,
    ServiceUnavailableError,
    Usage,
)
from roost.runtime import RunInfo, RunStatus, completion
from roost.workflows._activities import RunActivities
from roost.workflows._workflow import (
    ANSWER_SIGNAL,
    WORKFLOW_NAME,
    AgentRunWorkflow,
    RunInput,
    RunOptions,
)

log = logging.getLogger("roost.workflows")

_STATUS: dict[int, RunStatus] = {
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING: "running",
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED: "completed",
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_FAILED: "failed",
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_CANCELED: "cancelled",
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED: "cancelled",
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TIMED_OUT: "timed_out",
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW: "completed",
}


async def connect_temporal(address: str, namespace: str, *, timeout: float = 10.0) -> Client:
    """Connect to Temporal, failing with a clear error instead of hanging."""
    try:
        return await asyncio.wait_for(Client.connect(address, namespace=namespace), timeout)
    except (TimeoutError, RuntimeError, RPCError) as exc:
        raise ServiceUnavailableError(
            f"cannot reach Temporal at {address} (namespace {namespace!r}) within "
            f"{timeout:g}s: {exc or type(exc).__name__}. Set [workflows] temporal_address "
            "(ROOST_WORKFLOWS__TEMPORAL_ADDRESS), or leave it empty for the embedded server"
        ) from None


class TemporalExecutor:
    """Runs each invocation as an ``roost.AgentRun`` workflow on ``task_queue``.

    A process that should *execute* runs (not only start and watch them) calls
    :meth:`start_worker`; every roost process of a deployment may do so, and any of them
    resumes the runs of one that died.
    """

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        options: RunOptions,
        activities: RunActivities | None = None,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.options = options
        self.activities = activities
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None

    # --- worker --------------------------------------------------------------------------

    async def start_worker(self, *, max_concurrent_activities: int = 100) -> None:
        """Poll the task queue in this process: run workflows and activities."""
        if self._worker is not None:
            return
        if self.activities is None:
            raise RuntimeError("a worker needs the run activities")
        self._worker = Worker(
            self.client,
            task_queue=self.task_queue,
            workflows=[AgentRunWorkflow],
            activities=self.activities.all(),
            workflow_runner=UnsandboxedWorkflowRunner(),
            max_concurrent_activities=max_concurrent_activities,
            max_concurrent_local_activities=max_concurrent_activities,
            # a workflow task that cannot complete (a bug in roost's workflow code, a payload
            # over Temporal's limit, non-determinism) fails the run with its cause instead of
            # being retried forever while the caller waits (docs/durable-runs.md)
            workflow_failure_exception_types=[Exception],
        )
        self._worker_task = asyncio.create_task(self._worker.run(), name="temporal worker")

    async def close(self) -> None:
        if self._worker is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._worker.shutdown(), 10)
            if self._worker_task is not None:
                with contextlib.suppress(BaseException):
                    await self._worker_task
            self._worker = self._worker_task = None

    # --- runs ----------------------------------------------------------------------------

    async def start(self, invocation: InvokeMessage) -> None:
        run_input = RunInput(invocation=invocation, options=self.options)
        # the same invocation started (and maybe finished) before is the same run
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self.client.start_workflow(
                WORKFLOW_NAME,
                msgspec.to_builtins(run_input),
                id=invocation.id,
                task_queue=self.task_queue,
                # the agent enforces its own timeout; this bounds a run whose worker never
                # comes back (and a question nobody answers) so it cannot linger forever
                execution_timeout=timedelta(seconds=invocation.timeout_s + 3600),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                memo={
                    "agent": invocation.agent,
                    "session": invocation.session,
                    "branch": invocation.branch,
                    "question": "",
                },
            )

    async def wait(self, run_id: str, timeout: float | None = None) -> CompleteMessage:
        handle: WorkflowHandle[Any, Any] = self.client.get_workflow_handle(run_id)
        try:
            raw = await asyncio.wait_for(handle.result(), timeout)
        except TimeoutError:
            raise ServiceTimeoutError(
                f"run {run_id} did not finish within {timeout:g}s; it is still running "
                f"(roost run get {run_id})"
            ) from None
        except WorkflowFailureError as err:
            return await self._failed_completion(run_id, err)
        except RPCError as err:
            raise _rpc_error(err, run_id) from None
        return msgspec.convert(raw, CompleteMessage)

    async def _failed_completion(self, run_id: str, err: WorkflowFailureError) -> CompleteMessage:
        info = await self.get_run(run_id)
        invocation = InvokeMessage(
            id=run_id, agent=info.agent, session=info.session, branch=info.branch
        )
        if isinstance(err.cause, CancelledError | TerminatedError):
            error = ErrorInfo(code=ErrorCode.CANCELLED, message="the run was cancelled")
        else:
            error = ErrorInfo(
                code=ErrorCode.INTERNAL, message=f"the run failed: {err.cause or err}"
            )
        return completion(invocation, None, error, Usage(), 0.0)

    async def execute(self, invocation: InvokeMessage) -> CompleteMessage:
        await self.start(invocation)
        return await self.wait(invocation.id)

    async def cancel(self, run_id: str) -> None:
        info = await self.get_run(run_id)
        if info.status != "running":
            raise InvalidRequestError(f"run {run_id} is already {info.status}")
        await self.client.get_workflow_handle(run_id).cancel()

    async def answer(self, run_id: str, text: str) -> None:
        info = await self.get_run(run_id)
        if info.status != "running":
            raise InvalidRequestError(f"run {run_id} is {info.status}, not waiting for an answer")
        if not info.question:
            raise InvalidRequestError(f"run {run_id} is not waiting for an answer")
        await self.client.get_workflow_handle(run_id).signal(ANSWER_SIGNAL, text)

    async def get_run(self, run_id: str) -> RunInfo:
        try:
            desc = await self.client.get_workflow_handle(run_id).describe()
        except RPCError as err:
            raise _rpc_error(err, run_id) from None
        return await _run_info(desc)

    async def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        runs: list[RunInfo] = []
        query = f'WorkflowType = "{WORKFLOW_NAME}" AND TaskQueue = "{self.task_queue}"'
        async for execution in self.client.list_workflows(query, limit=limit):
            runs.append(await _run_info(execution))
        return runs


async def _run_info(execution: WorkflowExecution) -> RunInfo:
    memo = await execution.memo()
    status = _STATUS.get(execution.status or 0, "unknown") if execution.status else "unknown"
    return RunInfo(
        id=execution.id,
        agent=str(memo.get("agent", "")),
        session=str(memo.get("session", "")),
        branch=str(memo.get("branch", "")),
        status=status,
        started_at=execution.start_time.timestamp(),
        closed_at=execution.close_time.timestamp() if execution.close_time else None,
        question=str(memo.get("question", "")) if status == "running" else "",
    )


def _rpc_error(err: RPCError, run_id: str) -> Exception:
    if err.status == RPCStatusCode.NOT_FOUND:
        return NotFoundError(f"no run {run_id!r}")
    return ServiceUnavailableError(f"Temporal: {err.message}")
