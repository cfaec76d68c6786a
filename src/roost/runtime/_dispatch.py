"""How an agent's calls leave the agent: the dispatcher contract and its bus implementation.

The :class:`Dispatcher` is the single seam between agent code and the platform. The
in-process executor uses :class:`BusDispatcher` (record, send over the bus, record the
answer); a durable executor implements the same contract with one activity per call, so agent
code and :class:`~roost.runtime.AgentContext` never change.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from roost.bus import Bus
from roost.protocol import (
    EventMessage,
    EventType,
    InvokeMessage,
    Message,
    RequestMessage,
    ResponseMessage,
    RoostError,
    ServiceName,
    Usage,
    encode,
    subjects,
)
from roost.services import call_service, raise_for_error


class Recorder(Protocol):
    """Appends protocol messages to the session DAG, returning the new node's id."""

    async def record(self, message: Message, **annotations: Any) -> str: ...


class NullRecorder:
    """Records nothing (for agent unit tests that do not care about sessions)."""

    async def record(self, message: Message, **annotations: Any) -> str:
        return ""


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


class BusDispatcher:
    """Records each request, sends it over the bus, records the response, returns its body."""

    def __init__(self, bus: Bus, recorder: Recorder, invocation: InvokeMessage) -> None:
        self.bus = bus
        self.recorder = recorder
        self.invocation = invocation
        self._usage = Usage()

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
            timeout_s=timeout,
        )
        await self.recorder.record(request)
        try:
            response = await call_service(self.bus, request)
        except RoostError as exc:
            # transport failure (no responders, timeout): record it as the call's answer
            response = ResponseMessage(
                session=inv.session,
                branch=inv.branch,
                correlation_id=request.id,
                trace=inv.trace,
                ok=False,
                error=exc.to_info(),
            )
            await self.recorder.record(response, service=service, op=op, agent=inv.agent)
            raise
        await self.recorder.record(response, service=service, op=op, agent=inv.agent)
        usage = response.body.get("usage") if response.ok else None
        if isinstance(usage, dict):
            self._usage = self._usage + msgspec.convert(usage, Usage)
        return raise_for_error(response)

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
        if type != "token":  # the durable copy of an event lives in the session DAG
            await self.recorder.record(event)
        await self.bus.publish(subjects.events(inv.session), encode(event))
