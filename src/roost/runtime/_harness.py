"""The harness starts runs: it opens or continues a session, invokes the agent through an
executor, streams the run's events to the caller, and returns the completion."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from roost.bus import Bus, Delivery
from roost.protocol import (
    CompleteMessage,
    EventMessage,
    InvokeMessage,
    Message,
    NotFoundError,
    ProtocolError,
    TraceContext,
    decode,
    new_id,
    subjects,
)
from roost.runtime._executor import Executor, RunInfo
from roost.stores import Node, Session, StateStore

EventCallback = Callable[[EventMessage], Awaitable[None] | None]


class StateRecorder:
    """Records protocol messages as nodes of the session DAG (see :mod:`roost.stores`)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    async def record(self, message: Message, **annotations: Any) -> Node:
        content = msgspec.to_builtins(message)
        content.update(annotations)
        kind = content.pop("kind")
        return await self.state.append_node(message.session, message.branch, kind, content)


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its completion, and the session and branch it ran on."""

    session: Session
    branch: str
    complete: CompleteMessage

    @property
    def ok(self) -> bool:
        return self.complete.ok

    @property
    def output(self) -> Any:
        return self.complete.output


@dataclass(frozen=True)
class RunStarted:
    """A run that has begun: where it runs and its id (what a client needs to follow it)."""

    session: Session
    branch: str
    run_id: str


class Harness:
    """Starts agent runs on sessions. ``run`` is the one entry point the CLI, the agent
    service and the API use."""

    def __init__(
        self, bus: Bus, state: StateStore, executor: Executor, *, run_timeout_s: float = 600.0
    ) -> None:
        self.bus = bus
        self.state = state
        self.executor = executor
        self.run_timeout_s = run_timeout_s

    async def start(
        self,
        agent: str,
        input: Any,
        *,
        session: str | None = None,
        branch: str | None = None,
        timeout_s: float | None = None,
        metadata: dict[str, Any] | None = None,
        trace: TraceContext | None = None,
        run_id: str | None = None,
        agent_version: int = 0,
        owner: str = "",
    ) -> tuple[Session, InvokeMessage]:
        """Start a run of ``agent`` on ``input`` and return at once (its session and
        invocation; the invocation id is the run id).

        ``session`` (id or name) continues a session, else a new one is created; ``branch``
        defaults to the session's main branch. ``run_id`` makes the start idempotent: a run
        with that id that already exists is not started again. ``agent_version`` pins the
        deployed version to run (0: the latest when the run begins); ``owner`` is the user
        whose run it is (whose tools daemon its daemon tools reach).
        """
        sess, known = await self._session_for(agent, session, run_id)
        invocation = await self._start_in(
            sess, known, agent, input, branch, timeout_s, metadata, trace, run_id, agent_version,
            owner,
        )  # fmt: skip
        return sess, invocation

    async def _start_in(
        self,
        sess: Session,
        known: RunInfo | None,
        agent: str,
        input: Any,
        branch: str | None,
        timeout_s: float | None,
        metadata: dict[str, Any] | None,
        trace: TraceContext | None,
        run_id: str | None,
        agent_version: int,
        owner: str = "",
    ) -> InvokeMessage:
        if known is not None:
            return InvokeMessage(
                id=known.id, agent=known.agent, session=sess.id, branch=known.branch
            )
        invocation = InvokeMessage(
            session=sess.id,
            branch=branch or sess.main_branch,
            agent=agent,
            agent_version=agent_version,
            owner=owner,
            input=input,
            timeout_s=timeout_s or self.run_timeout_s,
            metadata=metadata or {},
            trace=trace or TraceContext(),
            id=run_id or new_id(),
        )
        await self.executor.start(invocation)
        return invocation

    async def wait(
        self,
        run_id: str,
        *,
        session: str,
        timeout_s: float | None = None,
        on_event: EventCallback | None = None,
    ) -> CompleteMessage:
        """Wait for run ``run_id`` (of ``session``) to complete, streaming its events."""
        async with self._events(session, run_id, on_event):
            return await self.executor.wait(run_id, timeout_s)

    async def run(
        self,
        agent: str,
        input: Any,
        *,
        session: str | None = None,
        branch: str | None = None,
        timeout_s: float | None = None,
        on_event: EventCallback | None = None,
        metadata: dict[str, Any] | None = None,
        trace: TraceContext | None = None,
        run_id: str | None = None,
        agent_version: int = 0,
        owner: str = "",
    ) -> RunResult:
        """Run ``agent`` on ``input`` to completion (see :meth:`start`). ``on_event``
        receives the run's live events (progress, steps, questions, tokens)."""
        # the session first: its events are subscribed to before the run can emit any
        sess, known = await self._session_for(agent, session, run_id)
        async with self._events(sess.id, run_id or "", on_event):
            invocation = await self._start_in(
                sess, known, agent, input, branch, timeout_s, metadata, trace, run_id,
                agent_version, owner,
            )  # fmt: skip
            # the run enforces its own timeout; this wait only guards against a lost run
            complete = await self.executor.wait(invocation.id, invocation.timeout_s + 60)
        return RunResult(session=sess, branch=invocation.branch, complete=complete)

    async def _session_for(
        self, agent: str, session: str | None, run_id: str | None
    ) -> tuple[Session, RunInfo | None]:
        """The session a run belongs in, and the run itself if ``run_id`` already exists."""
        if run_id is not None:
            with contextlib.suppress(NotFoundError):
                known = await self.executor.get_run(run_id)
                return await self.state.get_session(known.session), known
        if session:
            return await self.state.get_session(session), None
        return await self.state.create_session(agent), None

    async def cancel(self, run_id: str) -> None:
        await self.executor.cancel(run_id)

    async def answer(self, run_id: str, text: str) -> None:
        await self.executor.answer(run_id, text)

    async def get_run(self, run_id: str) -> RunInfo:
        return await self.executor.get_run(run_id)

    async def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        return await self.executor.list_runs(limit=limit)

    @contextlib.asynccontextmanager
    async def _events(
        self, session: str, invocation_id: str, on_event: EventCallback | None
    ) -> Any:
        if on_event is None:
            yield
            return

        async def deliver(delivery: Delivery) -> None:
            try:
                event = decode(delivery.data, EventMessage)
            except ProtocolError:
                return
            result = on_event(event)
            if result is not None:
                await result

        sub = await self.bus.subscribe(subjects.events(session), deliver)
        try:
            yield
        finally:
            await self.bus.flush()
            await sub.unsubscribe()


async def branch_history(
    state: StateStore, invocation: InvokeMessage, invoke_node: Node | None = None
) -> list[tuple[Any, Any]]:
    """Earlier successful (input, output) pairs of the invocation's agent on its branch.

    ``invoke_node`` (the invocation's recorded node) saves the read when it is the first
    node of its branch, as it is for every run in a new session.
    """
    if invoke_node is not None and invoke_node.parent is None:
        return []
    nodes = await state.list_nodes(invocation.session, invocation.branch)
    inputs: dict[str, Any] = {}
    pairs: list[tuple[Any, Any]] = []
    for node in nodes:
        content = node.content
        if node.kind == "invoke" and content.get("agent") == invocation.agent:
            if content.get("id") != invocation.id:
                inputs[content["id"]] = content.get("input")
        elif node.kind == "complete" and content.get("ok", True):
            invoke_id = content.get("correlation_id", "")
            if invoke_id in inputs:
                pairs.append((inputs.pop(invoke_id), content.get("output")))
    return pairs
