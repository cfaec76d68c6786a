"""The tool service: runs the tools an agent declares (built-ins or functions in its folder)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from roost.bus import Bus
from roost.protocol import (
    InvalidRequestError,
    NotFoundError,
    RequestMessage,
    RoostError,
    ToolRequest,
    ToolResult,
    from_body,
    to_body,
)
from roost.services._base import ServiceWorker
from roost.tools import Tool

log = logging.getLogger("roost.services.tools")

# (agent name, deployed version or 0 for the latest) -> its tools by name
ToolResolver = Callable[[str, int], Awaitable[dict[str, Tool]]]


class ToolService(ServiceWorker):
    """Service ``tool``: ``call`` runs a tool of the calling agent, ``specs`` lists them.

    A tool that raises returns ``is_error=True`` with the message (the model sees it and may
    recover); unknown tools and bad arguments are request errors.
    """

    service = "tool"

    def __init__(
        self, bus: Bus, resolve_tools: ToolResolver, *, timeout_s: float = 60.0, **kw: Any
    ) -> None:
        super().__init__(bus, **kw)
        self.resolve_tools = resolve_tools
        self.timeout_s = timeout_s

    async def _tools(self, request: RequestMessage) -> dict[str, Tool]:
        if not request.agent:
            raise InvalidRequestError("tool requests must name the calling agent")
        return await self.resolve_tools(request.agent, request.agent_version)

    async def op_specs(self, request: RequestMessage) -> dict[str, Any]:
        tools = await self._tools(request)
        return {"tools": [to_body(t.spec) for t in tools.values()]}

    async def op_call(self, request: RequestMessage) -> dict[str, Any]:
        call = from_body(request.body, ToolRequest)
        tools = await self._tools(request)
        tool = tools.get(call.name)
        if tool is None:
            raise NotFoundError(
                f"agent {request.agent!r} has no tool {call.name!r} "
                f"(its tools: {', '.join(sorted(tools)) or 'none'})"
            )
        try:
            output = await asyncio.wait_for(tool.invoke(call.arguments), self.timeout_s)
        except RoostError:
            raise
        except TimeoutError:
            return to_body(
                ToolResult(output=f"tool timed out after {self.timeout_s:g}s", is_error=True)
            )
        except Exception as exc:
            log.info("tool %s of %s failed: %s", call.name, request.agent, exc)
            return to_body(ToolResult(output=f"{type(exc).__name__}: {exc}", is_error=True))
        return to_body(ToolResult(output=output))
