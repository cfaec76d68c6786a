"""The agent service: lets one agent call another (``ctx.call_agent``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from roost.bus import Bus
from roost.protocol import (
    AgentCall,
    AgentCallResult,
    CompleteMessage,
    InvalidRequestError,
    NotFoundError,
    RequestMessage,
    RoostError,
    from_body,
    tenants,
    to_body,
)
from roost.services._base import ServiceWorker

# (call, the request that asked for it) -> the called run's completion
AgentRunner = Callable[[AgentCall, RequestMessage], Awaitable[CompleteMessage]]


class AgentCallService(ServiceWorker):
    """Service ``agent``, op ``call``: runs the named agent in a new session and returns its
    output. Calls deeper than ``max_depth`` are refused, so agents calling each other in a
    loop fail clearly instead of running forever."""

    service = "agent"

    def __init__(self, bus: Bus, run_agent: AgentRunner, *, max_depth: int = 8, **kw: Any) -> None:
        super().__init__(bus, **kw)
        self.run_agent = run_agent
        self.max_depth = max_depth

    async def op_call(self, request: RequestMessage) -> dict[str, Any]:
        call = from_body(request.body, AgentCall)
        if tenants.SEPARATOR in call.agent:
            raise NotFoundError(f"agent {call.agent!r} is not deployed", agent=call.agent)
        # an agent calls the agents of its own tenant, by the names that tenant gives them
        call = msgspec.structs.replace(
            call, agent=tenants.qualify(tenants.tenant_of(request.agent), call.agent)
        )
        if call.depth > self.max_depth:
            raise InvalidRequestError(
                f"agent call chain is deeper than {self.max_depth} "
                f"({request.agent!r} -> {call.agent!r}); is there a loop?"
            )
        complete = await self.run_agent(call, request)
        if not complete.ok and complete.error is not None:
            raise RoostError.from_info(complete.error)
        return to_body(
            AgentCallResult(output=complete.output, session=complete.session, usage=complete.usage)
        )
