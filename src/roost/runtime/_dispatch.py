"""How an agent's calls leave the agent: the dispatcher contract and its bus implementation.

The :class:`Dispatcher` is the single seam between agent code and the platform. The
in-process executor uses :class:`BusDispatcher` (record, send over the bus, record the
answer); a durable executor implements the same contract with one activity per call, so agent
code and :class:`~roost.runtime.AgentContext` never change.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from roost.auth import GrantSigner
from roost.bus import Bus, Delivery
from roost.protocol import (
    EventMessage,
    EventType,
    InvokeMessage,
    NotFoundError,
    RequestMessage,
    ResponseMessage,
    RoostError,
    ServiceName,
    ServiceTimeoutError,
    Usage,
    subjects,
    tenants,
)
from roost.runtime._events import EventLog
from roost.runtime._recorder import Recorder
from roost.services import call_service, raise_for_error
from roost.stores import ModelRecord

ModelLookup = Callable[[str], Awaitable[ModelRecord]]
"""Model name -> its registry record (:class:`~roost.protocol.NotFoundError` if unknown)."""


class Dispatcher(Protocol):
    """Carries an agent's service calls and events for one invocation."""

    @property
    def usage(self) -> Usage:
        """Token usage of the calls made so far."""
        ...

    async def call(
        self, service: ServiceName, op: str, body: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        """Make one service call and return the response body (raises on failure)."""
        ...

    async def emit(self, type: EventType, data: dict[str, Any]) -> None:
        """Publish a real-time event of the run."""
        ...

    def now(self) -> float:
        """The current time (seconds since the epoch); replay-safe in durable runs."""
        ...

    def random(self) -> random.Random:
        """A random generator; replay-safe (deterministically seeded) in durable runs."""
        ...

    async def step(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once; a durable run records the result and replays it."""
        ...

    async def ask(self, question: str, timeout: float) -> str:
        """Publish ``question`` and wait (up to ``timeout`` seconds) for a human's answer."""
        ...


class EngineRouter:
    """Sends a model call to the workers that run the model's engine.

    Inference and embedding workers serve one shard subject per engine they run
    (``roost.v1.svc.infer.llama-cpp``, ...); the router looks the requested model up with
    ``resolve_model`` (the platform's, which caches records) and names its engine's shard,
    so a request for a llama.cpp model never lands on a node that only talks to OpenAI.
    Requests it cannot route (other services, no model named, an unknown model: the service
    reports that) use the plain subject.
    """

    def __init__(self, resolve_model: ModelLookup) -> None:
        self.resolve_model = resolve_model

    async def shard(self, request: RequestMessage) -> str | None:
        if (request.service, request.op) not in _ROUTED:
            return None
        name = request.body.get("model")
        if not isinstance(name, str) or not name:
            return None
        for candidate in tenants.visible_names(tenants.tenant_of(request.agent), name):
            try:
                model = await self.resolve_model(candidate)
            except NotFoundError:
                continue
            return model.engine
        return None


_ROUTED = frozenset({("infer", "chat"), ("embed", "embed")})


async def dispatch_request(
    bus: Bus,
    recorder: Recorder,
    request: RequestMessage,
    router: EngineRouter | None = None,
    signer: GrantSigner | None = None,
) -> dict[str, Any]:
    """Record ``request``, send it to its service (its engine's shard, with ``router``;
    stamped with its run grant, with ``signer``), record the answer, return its body.

    A transport failure (no responders, timeout) is recorded as the call's answer and raised;
    so is a service's error response (:func:`~roost.services.raise_for_error`).
    """
    await recorder.record(request)
    try:
        shard = await router.shard(request) if router is not None else None
        # stamped after recording: a grant is proof for the services, not history
        sent = signer.stamp(request) if signer is not None else request
        response = await call_service(bus, sent, shard=shard)
    except RoostError as exc:
        response = ResponseMessage(
            session=request.session,
            branch=request.branch,
            correlation_id=request.id,
            trace=request.trace,
            ok=False,
            error=exc.to_info(),
        )
        await recorder.record(response, service=request.service, op=request.op, agent=request.agent)
        raise
    await recorder.record(response, service=request.service, op=request.op, agent=request.agent)
    return raise_for_error(response)


class BusDispatcher:
    """Records each request, sends it over the bus, records the response, returns its body."""

    def __init__(
        self,
        bus: Bus,
        recorder: Recorder,
        invocation: InvokeMessage,
        agent_version: int = 0,
        *,
        events: EventLog | None = None,
        router: EngineRouter | None = None,
        signer: GrantSigner | None = None,
    ) -> None:
        self.bus = bus
        self.signer = signer
        self.recorder = recorder
        self.events = events or EventLog(bus, recorder)
        self.router = router
        self.invocation = invocation
        self.agent_version = agent_version
        self._usage = Usage()
        self._random = random.Random()
        self.question = ""
        """The question the run waits on (``ctx.ask``), while it waits."""

    @property
    def usage(self) -> Usage:
        return self._usage

    async def call(
        self, service: ServiceName, op: str, body: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        inv = self.invocation
        request = RequestMessage(
            session=inv.session,
            branch=inv.branch,
            correlation_id=inv.id,
            trace=inv.trace,
            service=service,
            op=op,
            body=body,
            agent=inv.agent,
            agent_version=self.agent_version,
            timeout_s=timeout,
            owner=inv.owner,
        )
        body = await dispatch_request(self.bus, self.recorder, request, self.router, self.signer)
        usage = body.get("usage")
        if isinstance(usage, dict):
            self._usage = self._usage + msgspec.convert(usage, Usage)
        return body

    async def emit(self, type: EventType, data: dict[str, Any]) -> None:
        inv = self.invocation
        event = EventMessage(
            session=inv.session,
            branch=inv.branch,
            correlation_id=inv.id,
            trace=inv.trace,
            type=type,
            agent=inv.agent,
            data=data,
        )
        await self.events.emit(event)

    def now(self) -> float:
        return time.time()

    def random(self) -> random.Random:
        return self._random

    async def step(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        name = getattr(fn, "__qualname__", repr(fn))
        await self.emit("step", {"message": f"step {name}", "step": name, "phase": "started"})
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        await self.emit("step", {"message": f"step {name} done", "step": name, "phase": "done"})
        return result

    async def ask(self, question: str, timeout: float) -> str:
        """Wait for ``roost run answer`` (delivered on :func:`subjects.run_answer`)."""
        answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_answer(delivery: Delivery) -> None:
            text = bytes(delivery.data).decode("utf-8", "replace")
            if not answered.done():
                answered.set_result(text)
                await delivery.respond(b"ok")
            else:
                await delivery.respond(b"already answered")

        sub = await self.bus.subscribe(subjects.run_answer(self.invocation.id), on_answer)
        self.question = question
        try:
            await self.emit("question", {"message": question, "question": question})
            try:
                answer = await asyncio.wait_for(answered, timeout)
            except TimeoutError:
                raise ServiceTimeoutError(
                    f"no answer to {question!r} within {timeout:g}s"
                ) from None
            self.question = ""
            await self.emit("answer", {"message": answer, "answer": answer})
            return answer
        finally:
            self.question = ""
            await sub.unsubscribe()
