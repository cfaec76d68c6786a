"""The tool service: runs the tools an agent declares, where each one is placed.

``server`` tools (built-ins, functions in the agent's folder) run here, in the worker.
``daemon`` tools run on the run owner's tools daemon, reached through :class:`Daemons`: in
distributed mode the gateways over the bus, in local mode a tools host in this process.
``anywhere`` tools run on the daemon when the owner has one connected, else here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from roost.bus import Bus
from roost.protocol import (
    ErrorCode,
    InvalidRequestError,
    NotFoundError,
    RequestMessage,
    RoostError,
    ServiceUnavailableError,
    ToolRequest,
    ToolResult,
    from_body,
    to_body,
)
from roost.protocol import daemon as wire
from roost.services._base import ServiceWorker
from roost.tools import DeclaredTool, Tool, offered_name
from roost.toolsd import BUILTIN_SPECS

log = logging.getLogger("roost.services.tools")

# (agent name, deployed version or 0 for the latest) -> its tools by offered name
ToolResolver = Callable[[str, int], Awaitable[dict[str, DeclaredTool]]]

ANSWER_MARGIN_S = 0.5
"""How long before the caller's request timeout a daemon call gives up, so the caller hears
why (no daemon) instead of timing out itself."""

SPECS_TTL_S = 10.0
"""How long a daemon's tool list is reused for ``specs`` before asking it again."""


class Daemons(Protocol):
    """Users' tools daemons: ``roost.gateway.DaemonCaller`` (over the bus, to whichever
    gateway holds the daemon) or ``roost.toolsd.LocalDaemon`` (in this process)."""

    async def online(self, user: str, *, grant: str = "") -> dict[str, Any] | None: ...

    async def call(
        self,
        user: str,
        op: str,
        body: dict[str, Any] | None = None,
        *,
        timeout_s: float = 60.0,
        call_id: str | None = None,
        grant: str = "",
    ) -> wire.DaemonReply: ...


class ToolService(ServiceWorker):
    """Service ``tool``: ``call`` runs a tool of the calling agent, ``specs`` lists them.

    A tool that raises returns ``is_error=True`` with the message (the model sees it and may
    recover), as does a call the daemon's policy refuses. Unknown tools and bad arguments
    are request errors; a daemon tool whose owner has no daemon connected is
    :class:`~roost.protocol.ServiceUnavailableError` (retryable) naming ``roost daemon
    start``, answered within the request's timeout.
    """

    service = "tool"

    def __init__(
        self,
        bus: Bus,
        resolve_tools: ToolResolver,
        *,
        daemons: Daemons | None = None,
        timeout_s: float = 60.0,
        **kw: Any,
    ) -> None:
        super().__init__(bus, **kw)
        self.resolve_tools = resolve_tools
        self.daemons = daemons
        self.timeout_s = timeout_s
        self._daemon_specs: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}

    async def _tools(self, request: RequestMessage) -> dict[str, DeclaredTool]:
        if not request.agent:
            raise InvalidRequestError("tool requests must name the calling agent")
        return await self.resolve_tools(request.agent, request.agent_version)

    # --- specs ------------------------------------------------------------------------

    async def op_specs(self, request: RequestMessage) -> dict[str, Any]:
        tools = await self._tools(request)
        on_daemon = any(t.runs_on != "server" for t in tools.values())
        offered = await self._offered_by_daemon(request) if on_daemon else None
        specs = []
        for tool in tools.values():
            spec = self._spec(tool, offered)
            if spec is not None:
                specs.append(spec)
        return {"tools": specs}

    def _spec(
        self, tool: DeclaredTool, offered: dict[str, dict[str, Any]] | None
    ) -> dict[str, Any] | None:
        from_daemon = offered.get(tool.name) if offered is not None else None
        source: dict[str, Any]
        if tool.runs_on != "server" and from_daemon is not None:
            source = from_daemon
        elif tool.server is not None:
            source = to_body(tool.server.spec)
        elif tool.name in BUILTIN_SPECS:  # a daemon tool while no daemon is connected
            source = BUILTIN_SPECS[tool.name]
        elif offered is None:  # an MCP tool of a daemon not connected: offered as declared
            source = {}
        else:  # the connected daemon does not have it (not configured, or its policy)
            log.info("the daemon offers no tool %r: not offered to the model", tool.name)
            return None
        return {
            "name": tool.offered_name,
            "description": tool.description
            or source.get("description")
            or f"{tool.name} (runs on the user's tools daemon)",
            "parameters": source.get("parameters") or {"type": "object", "properties": {}},
        }

    async def _offered_by_daemon(self, request: RequestMessage) -> dict[str, dict[str, Any]] | None:
        """The owner's daemon's tools by name, or ``None`` when none is connected."""
        if self.daemons is None:
            return None
        if await self.daemons.online(request.owner, grant=request.grant) is None:
            return None
        cached = self._daemon_specs.get(request.owner)
        if cached is not None and time.monotonic() - cached[0] < SPECS_TTL_S:
            return cached[1]
        try:
            reply = await self.daemons.call(
                request.owner,
                "tool.specs",
                timeout_s=self._budget(request, cap=5.0),
                grant=request.grant,
            )
        except ServiceUnavailableError:
            return None
        if not reply.ok:
            return None
        offered = {s["name"]: s for s in reply.body.get("tools", []) if isinstance(s, dict)}
        self._daemon_specs[request.owner] = (time.monotonic(), offered)
        return offered

    # --- calls ------------------------------------------------------------------------

    async def op_call(self, request: RequestMessage) -> dict[str, Any]:
        call = from_body(request.body, ToolRequest)
        tools = await self._tools(request)
        tool = tools.get(call.name) or tools.get(offered_name(call.name))
        if tool is None:
            raise NotFoundError(
                f"agent {request.agent!r} has no tool {call.name!r} "
                f"(its tools: {', '.join(sorted(tools)) or 'none'})"
            )
        if await self._on_daemon_side(request, tool):
            return await self._on_daemon(request, tool, call)
        assert tool.server is not None  # a server or anywhere tool has one (resolve_tools)
        return await self._here(request, tool.server, call)

    async def _on_daemon_side(self, request: RequestMessage, tool: DeclaredTool) -> bool:
        """Whether this call goes to the owner's daemon: always for a daemon tool; for an
        ``anywhere`` tool, when the owner's daemon is connected and offers it."""
        if tool.runs_on != "anywhere":
            return tool.runs_on == "daemon"
        offered = await self._offered_by_daemon(request)
        return offered is not None and tool.name in offered

    async def _on_daemon(
        self, request: RequestMessage, tool: DeclaredTool, call: ToolRequest
    ) -> dict[str, Any]:
        if self.daemons is None:
            raise RoostError(
                f"tool {tool.name!r} runs on the user's tools daemon, and this platform "
                'reaches no daemons ([tools] daemon = "off")',
                code=ErrorCode.INVALID_CONFIG,
            )
        reply = await self.daemons.call(
            request.owner,
            "tool.call",
            {"name": tool.name, "arguments": call.arguments},
            timeout_s=self._budget(request, cap=self.timeout_s),
            call_id=request.id,  # a redelivered request is the same call: it runs once
            grant=request.grant,  # gateways check the run is the daemon's user's
        )
        if not reply.ok:
            error = reply.error
            if error is None:
                raise RoostError(f"the daemon failed {tool.name!r} without saying why")
            raise RoostError.from_info(error)
        return to_body(
            ToolResult(output=reply.body.get("output"), is_error=bool(reply.body.get("is_error")))
        )

    def _budget(self, request: RequestMessage, *, cap: float) -> float:
        return max(0.1, min(cap, request.timeout_s - ANSWER_MARGIN_S))

    async def _here(self, request: RequestMessage, tool: Tool, call: ToolRequest) -> dict[str, Any]:
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
