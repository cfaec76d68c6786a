"""The agent run workflow: agent code runs as the workflow body, every side effect is an
activity.

Python and declarative (chat) agents run *inside* the workflow through a
:class:`WorkflowDispatcher`, so their ``ctx`` calls become activities and a replay after a
crash answers completed calls from history. A process agent is opaque to roost, so its whole
invocation is one retried activity.

The workflow is not sandboxed: agent code is loaded from deployed folders at run time, which
Temporal's import sandbox cannot follow. Determinism is the agent's contract instead (see
:class:`~roost.runtime.AgentContext`), and Temporal still detects a replay that diverges.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from roost.agents import AgentManifest, parse_manifest
from roost.protocol import (
    ErrorCode,
    ErrorInfo,
    EventMessage,
    EventType,
    InvalidRequestError,
    InvokeMessage,
    RequestMessage,
    RoostError,
    ServiceName,
    ServiceTimeoutError,
    Usage,
)
from roost.runtime import (
    AgentContext,
    AgentRuntime,
    ChatRuntime,
    PythonRuntime,
    RunDefaults,
    completion,
    run_agent,
)
from roost.stores import AgentRecord
from roost.workflows._activities import (
    BEGIN_RUN,
    EMIT,
    FINISH_RUN,
    INVOKE_PROCESS,
    SERVICE_CALL,
    STEP,
)
from roost.workflows._errors import from_activity_error, retry_policy
from roost.workflows._payloads import check_durable_size

WORKFLOW_NAME = "roost.AgentRun"
ANSWER_SIGNAL = "answer"
QUESTION_QUERY = "question"

# Calls that only read: safe to run as local activities (a replay may repeat them). The
# run's own bookkeeping (BEGIN_RUN, FINISH_RUN) is local too: it records idempotently.
LOCAL_CALLS = frozenset({("kv", "get"), ("kv", "list"), ("vec", "search"), ("tool", "specs")})


class RunOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Settings a run carries in its workflow input, so a replay uses the same ones."""

    request_timeout_s: float = 30.0
    infer_timeout_s: float = 120.0
    chat_model: str = ""
    embedding_model: str = ""
    max_turns: int = 8
    max_attempts: int = 5
    heartbeat_timeout_s: float = 10.0

    @classmethod
    def of(
        cls, defaults: RunDefaults, *, max_attempts: int, heartbeat_timeout_s: float
    ) -> RunOptions:
        """The options of runs started with this process's run ``defaults``."""
        return cls(
            request_timeout_s=defaults.request_timeout_s,
            infer_timeout_s=defaults.infer_timeout_s,
            chat_model=defaults.chat_model,
            embedding_model=defaults.embedding_model,
            max_turns=defaults.max_turns,
            max_attempts=max_attempts,
            heartbeat_timeout_s=heartbeat_timeout_s,
        )


class RunInput(msgspec.Struct, frozen=True, kw_only=True):
    invocation: InvokeMessage
    options: RunOptions = RunOptions()


@dataclass
class _Pending:
    question: str = ""
    answers: list[str] = field(default_factory=list)


class WorkflowDispatcher:
    """The :class:`~roost.runtime.Dispatcher` of a durable run: one activity per call."""

    def __init__(self, invocation: InvokeMessage, options: RunOptions, pending: _Pending) -> None:
        self.invocation = invocation
        self.options = options
        self.pending = pending
        self.agent_version = 0  # set once the run has resolved its agent
        self._usage = Usage()

    @property
    def usage(self) -> Usage:
        return self._usage

    def add_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage = self._usage + msgspec.convert(usage, Usage)

    def _envelope(self) -> dict[str, Any]:
        # ids and times from the workflow, so a replay builds the very same messages
        inv = self.invocation
        return {
            "id": str(workflow.uuid4()),
            "timestamp": workflow.time(),
            "session": inv.session,
            "branch": inv.branch,
            "correlation_id": inv.id,
            "trace": inv.trace,
        }

    async def call(
        self, service: ServiceName, op: str, body: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        request = RequestMessage(
            **self._envelope(),
            service=service,
            op=op,
            body=body,
            agent=self.invocation.agent,
            agent_version=self.agent_version,
            timeout_s=timeout,
            owner=self.invocation.owner,
        )
        arg = msgspec.to_builtins(request)
        check_durable_size(arg, f"the {service}.{op} request")
        limit = timedelta(seconds=timeout + 5)
        policy = retry_policy(self.options.max_attempts)
        try:
            if (service, op) in LOCAL_CALLS:
                result = await workflow.execute_local_activity(
                    SERVICE_CALL, arg, start_to_close_timeout=limit, retry_policy=policy
                )
            else:
                result = await workflow.execute_activity(
                    SERVICE_CALL,
                    arg,
                    start_to_close_timeout=limit,
                    heartbeat_timeout=timedelta(seconds=self.options.heartbeat_timeout_s),
                    retry_policy=policy,
                )
        except (ActivityError, ApplicationError) as err:
            raise from_activity_error(err, f"{service}.{op}") from None
        self.add_usage(result.get("usage"))
        return dict(result)

    async def emit(self, type: EventType, data: dict[str, Any], *, local: bool = True) -> None:
        event = EventMessage(**self._envelope(), type=type, agent=self.invocation.agent, data=data)
        run = workflow.execute_local_activity if local else workflow.execute_activity
        arg = msgspec.to_builtins(event)
        check_durable_size(arg, f"the {type} event")
        try:
            await run(
                EMIT,
                arg,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=retry_policy(3),
            )
        except (
            ActivityError,
            ApplicationError,
        ) as err:  # progress is best-effort: it never fails the run
            workflow.logger.warning("event not delivered: %s", err.cause or err)

    def now(self) -> float:
        return workflow.time()

    def random(self) -> random.Random:
        return workflow.random()

    async def step(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
        if not module or not qualname or "<" in qualname:
            raise InvalidRequestError(
                f"ctx.step needs a module-level function, not {fn!r}: a resumed run must be "
                "able to find it by name"
            )
        name = f"{module}:{qualname}"
        call = {"fn": name, "args": list(args), "kwargs": kwargs}
        check_durable_size(call, f"the arguments of step {qualname}")
        await self.emit("step", {"message": f"step {qualname}", "step": qualname})
        try:
            result = await workflow.execute_local_activity(
                STEP,
                call,
                start_to_close_timeout=timedelta(seconds=self.options.request_timeout_s),
                retry_policy=retry_policy(self.options.max_attempts),
            )
        except (ActivityError, ApplicationError) as err:
            raise from_activity_error(err, f"step {qualname}") from None
        await self.emit("step", {"message": f"step {qualname} done", "step": qualname})
        return result

    async def ask(self, question: str, timeout: float) -> str:
        self.pending.question = question
        workflow.upsert_memo({"question": question})
        # a regular activity, not a local one: it runs only after the memo naming the question
        # is committed, so whoever sees the event can answer at once
        await self.emit("question", {"message": question, "question": question}, local=False)
        try:
            await workflow.wait_condition(lambda: bool(self.pending.answers), timeout=timeout)
        except TimeoutError:
            raise ServiceTimeoutError(f"no answer to {question!r} within {timeout:g}s") from None
        finally:
            self.pending.question = ""
            workflow.upsert_memo({"question": ""})
        answer = self.pending.answers.pop(0)
        await self.emit("answer", {"message": answer, "answer": answer})
        return answer


class _DurableProcessRuntime:
    """A process agent's invocation as one activity (retried on transient failures)."""

    def __init__(self, options: RunOptions, dispatcher: WorkflowDispatcher) -> None:
        self.options = options
        self.dispatcher = dispatcher

    async def run(self, ctx: AgentContext, agent: AgentRecord, manifest: AgentManifest) -> Any:
        timeout = manifest.timeout_s or ctx.invocation.timeout_s
        try:
            result = await workflow.execute_activity(
                INVOKE_PROCESS,
                {
                    "invocation": msgspec.to_builtins(ctx.invocation),
                    "agent": msgspec.to_builtins(agent),
                    "chat_model": ctx.chat_model,
                    "embedding_model": ctx.embedding_model,
                    "history": ctx.history,
                },
                start_to_close_timeout=timedelta(seconds=timeout + 5),
                heartbeat_timeout=timedelta(seconds=self.options.heartbeat_timeout_s),
                retry_policy=retry_policy(self.options.max_attempts),
            )
        except (ActivityError, ApplicationError) as err:
            raise from_activity_error(err, f"process agent {agent.name!r}") from None
        self.dispatcher.add_usage(result.get("usage"))
        return result.get("output")

    async def close(self) -> None:
        return None


@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class AgentRunWorkflow:
    """One agent run. Workflow id = invocation id: starting the same invocation twice is
    the same run."""

    def __init__(self) -> None:
        self._pending = _Pending()

    @workflow.run
    async def run(self, raw: dict[str, Any]) -> dict[str, Any]:
        params = msgspec.convert(raw, RunInput)
        inv, options = params.invocation, params.options
        started = workflow.time()
        dispatcher = WorkflowDispatcher(inv, options, self._pending)
        output: Any = None
        error: ErrorInfo | None = None
        cancelled = False
        try:
            # Recording the run's start and end is idempotent (a node per message id) and
            # quick, so both are local activities: no round trips through the server.
            begun = await workflow.execute_local_activity(
                BEGIN_RUN,
                msgspec.to_builtins(inv),
                start_to_close_timeout=timedelta(seconds=options.request_timeout_s),
                retry_policy=retry_policy(options.max_attempts),
            )
            record = msgspec.convert(begun["agent"], AgentRecord)
            manifest = parse_manifest(record.manifest, f"{record.path}/agent.toml")
            dispatcher.agent_version = record.version
            ctx = AgentContext(
                inv,
                dispatcher,
                chat_model=manifest.models.chat or options.chat_model,
                embedding_model=manifest.models.embedding or options.embedding_model,
                request_timeout_s=options.request_timeout_s,
                infer_timeout_s=options.infer_timeout_s,
                history=[(pair[0], pair[1]) for pair in begun["history"]],
            )
            runtimes: dict[str, AgentRuntime] = {
                "python": PythonRuntime(),
                "chat": ChatRuntime(max_turns=options.max_turns),
                "process": _DurableProcessRuntime(options, dispatcher),
            }
            output, error = await run_agent(runtimes, ctx, record, manifest)
        except (ActivityError, ApplicationError) as err:
            error = from_activity_error(err, "starting the run").to_info()
        except RoostError as exc:
            error = exc.to_info()
        except asyncio.CancelledError:
            cancelled = True
            error = ErrorInfo(code=ErrorCode.CANCELLED, message="the run was cancelled")
        try:  # an output too large to record would fail the workflow task forever
            check_durable_size(msgspec.to_builtins(output), "the run's output")
        except RoostError as exc:
            output, error = None, exc.to_info()
        complete = completion(
            inv,
            output,
            error,
            dispatcher.usage,
            (workflow.time() - started) * 1000,
            id=str(workflow.uuid4()),
            timestamp=workflow.time(),
        )
        await workflow.execute_local_activity(
            FINISH_RUN,
            msgspec.to_builtins(complete),
            start_to_close_timeout=timedelta(seconds=options.request_timeout_s),
            retry_policy=retry_policy(options.max_attempts),
        )
        if cancelled:
            raise asyncio.CancelledError()
        return dict(msgspec.to_builtins(complete))

    @workflow.signal(name=ANSWER_SIGNAL)
    def answer(self, text: str) -> None:
        """The answer to the question the run asked (``ctx.ask``)."""
        self._pending.answers.append(text)

    @workflow.query(name=QUESTION_QUERY)
    def question(self) -> str:
        """The question the run waits on, or ``""``."""
        return self._pending.question
