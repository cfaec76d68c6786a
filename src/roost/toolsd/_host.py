"""The daemon's operations behind one entry point, :meth:`ToolHost.handle`.

The same host serves a daemon connected to a gateway and, in local mode, the platform's
in-process tool router, so a tool behaves the same wherever it runs.

Each call has an id. A call repeated with an id the host has seen (the gateway died and the
caller sent it again through another one) is not run again: it joins the call still running,
or gets the result kept from the first run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roost.protocol import ErrorInfo
from roost.protocol import daemon as wire
from roost.toolsd._builtin import Builtins, ToolInputError
from roost.toolsd._mcp import McpServers, load_mcp_config
from roost.toolsd._policy import Policy, PolicyDenied, load_policy
from roost.toolsd._terminal import TerminalError, Terminals

log = logging.getLogger("roost.toolsd")

REMEMBERED_CALLS = 4096
"""How many finished calls' results the host keeps, to answer a repeated call id."""

CANCELLED_RESULT: dict[str, Any] = {"output": "the call was cancelled", "is_error": True}

VIEW_TOOLS = {
    "fs.list": "list_files",
    "fs.read": "read_file",
    "fs.write": "write_file",
    "process.start": "process_start",
    "process.list": "process_list",
    "process.kill": "process_kill",
    "process.logs": "process_logs",
}
"""The operations of a browser's file and process views, and the tool each one runs (under
the same policy). A failed one is an :class:`OpError` (a view shows it), not a tool result."""

Approver = Callable[[str, dict[str, Any]], Awaitable[bool]]
"""Asks the user whether a tool call needing approval may run (True: yes)."""


@dataclass(frozen=True)
class HostConfig:
    """Where the daemon's local configuration lives."""

    policy_file: Path
    mcp_file: Path
    default_root: Path | None = None


class OpError(Exception):
    """A daemon operation failed in a way the caller should see as an error, not a result."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.info = ErrorInfo(code=code, message=message)


class ToolHost:
    """Runs daemon operations: ``tool.call``, ``tool.specs``, ``tool.cancel``, ``status``,
    ``config.reload`` (see :mod:`roost.protocol.daemon`)."""

    def __init__(self, config: HostConfig, *, approver: Approver | None = None) -> None:
        self.config = config
        self.policy: Policy = load_policy(config.policy_file, default_root=config.default_root)
        self.builtins = Builtins(self.policy)
        self.mcp = McpServers(load_mcp_config(config.mcp_file))
        self.approver = approver
        self.started_at = time.time()
        self.calls_run = 0
        self.terminals = Terminals()
        self._submitted: set[asyncio.Task[wire.Reply]] = set()
        self._running: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._done: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def start(self) -> None:
        await self.mcp.start()

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        await self.terminals.close()
        await self.builtins.close()
        await self.mcp.close()

    # --- what it offers ---------------------------------------------------------------

    def specs(self) -> list[dict[str, Any]]:
        """Every tool the policy lets run: the built-ins and the MCP servers' tools."""
        specs = self.builtins.specs() + self.mcp.specs()
        allowed = []
        for spec in specs:
            try:
                self.policy.check_tool(spec["name"])
            except PolicyDenied:
                continue
            allowed.append(spec)
        return allowed

    def status(self) -> dict[str, Any]:
        return {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "platform": platform.platform(terse=True),
            "started_at": self.started_at,
            "calls_run": self.calls_run,
            "running": sorted(self._running),
            "roots": [str(r) for r in self.policy.roots],
            "policy": self.policy.source,
            "tools": [s["name"] for s in self.specs()],
            "mcp": self.mcp.status(),
            "processes": [p.info() for p in self.builtins.processes.values()],
            "terminals": self.terminals.info(),
        }

    # --- operations -------------------------------------------------------------------

    async def answer(self, call: wire.Call) -> wire.Reply:
        """Run ``call`` and say how it went: a failed operation (or a bug of the daemon,
        logged) is a reply with ``ok=False``, so whoever asked always hears back."""
        try:
            body = await self.handle(call.id, call.op, call.body, call.timeout_s)
            return wire.Reply(id=call.id, body=body)
        except Exception as exc:
            return _failure(call.id, exc, f"operation {call.op}")

    async def handle(
        self, call_id: str, op: str, body: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]:
        """Run operation ``op``; raises :class:`OpError` for a failed operation."""
        if op == "tool.call":
            return await self._once(call_id, body, timeout_s)
        if op == "tool.specs":
            return {"tools": self.specs()}
        if op == "tool.cancel":
            task = self._running.get(str(body.get("id", "")))
            if task is not None:
                task.cancel()
            return {"cancelled": task is not None}
        if op in VIEW_TOOLS:  # a browser's file and process views: the same tools
            call = {"name": VIEW_TOOLS[op], "arguments": body}
            result = await self._once(call_id, call, timeout_s)
            if result.get("is_error"):
                code = "invalid_request" if result.get("denied") else "tool_failed"
                raise OpError(code, str(result["output"]))
            return {"output": result["output"]}
        if op == "terminal.open":
            return self._open_terminal(body)
        if op == "status":
            return self.status()
        if op == "config.reload":
            return await self.reload()
        raise OpError("unknown_op", f"the daemon has no operation {op!r}")

    def _open_terminal(self, body: dict[str, Any]) -> dict[str, Any]:
        terminal = body.get("terminal")
        if not isinstance(terminal, str) or not terminal:
            raise OpError("invalid_request", "terminal.open needs 'terminal' (an id)")
        try:
            self.policy.check_tool("terminal")
            cwd = self.policy.resolve_path(str(body.get("cwd") or self.policy.roots[0]))
        except PolicyDenied as exc:
            raise OpError("invalid_request", f"refused by the daemon's policy: {exc}") from None
        try:
            return self.terminals.open(
                terminal, cwd, rows=int(body.get("rows") or 24), cols=int(body.get("cols") or 80)
            )
        except (TerminalError, ValueError, OSError) as exc:
            raise OpError("invalid_request", f"cannot open a terminal: {exc}") from None

    async def reload(self) -> dict[str, Any]:
        """Re-read the policy and the MCP configuration (MCP servers are restarted)."""
        self.policy = load_policy(self.config.policy_file, default_root=self.config.default_root)
        self.builtins.policy = self.policy
        await self.mcp.close()
        self.mcp = McpServers(load_mcp_config(self.config.mcp_file))
        await self.mcp.start()
        return {"reloaded": True, "tools": [s["name"] for s in self.specs()]}

    def submit(self, call: wire.Call, send: Callable[[wire.Reply], None]) -> None:
        """Start ``call`` and hand its reply to ``send`` when it is done, with no task
        waiting in between (what a connected daemon does with each call it receives). A
        tool call's id runs once, as with :meth:`handle`."""
        if call.op != "tool.call":
            other = asyncio.create_task(self.answer(call))
            self._submitted.add(other)
            other.add_done_callback(self._submitted.discard)
            other.add_done_callback(lambda t: None if t.cancelled() else send(t.result()))
            return
        remembered = self._done.get(call.id)
        if remembered is not None:
            send(wire.Reply(id=call.id, body=remembered))
            return
        task = self._task(call.id, call.body, call.timeout_s)
        task.add_done_callback(lambda t: send(_reply(call.id, t)))

    def _task(self, call_id: str, body: dict[str, Any], timeout_s: float) -> asyncio.Task[Any]:
        """The running task of ``call_id``, started if it is new."""
        task = self._running.get(call_id)
        if task is None:
            task = asyncio.create_task(self._call(body, timeout_s), name=f"call-{call_id}")
            self._running[call_id] = task
            task.add_done_callback(lambda t: self._finished(call_id, t))
        return task

    async def _once(self, call_id: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        remembered = self._done.get(call_id)
        if remembered is not None:
            return remembered
        task = self._task(call_id, body, timeout_s)
        # a repeat of a running call joins it; the caller's cancel does not kill it for the
        # others (only tool.cancel does)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # the waiter itself was cancelled
            return CANCELLED_RESULT

    def _finished(self, call_id: str, task: asyncio.Task[dict[str, Any]]) -> None:
        self._running.pop(call_id, None)
        if task.cancelled():
            result: dict[str, Any] = CANCELLED_RESULT
        elif task.exception() is not None:
            return  # an OpError: not remembered, a repeat may succeed
        else:
            result = task.result()
        self._done[call_id] = result
        while len(self._done) > REMEMBERED_CALLS:
            self._done.popitem(last=False)

    async def _call(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        name = body.get("name")
        arguments = body.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise OpError(
                "invalid_request", "tool.call needs 'name' (string) and 'arguments' (object)"
            )
        try:
            self.policy.check_tool(name)
            asks = self.policy.needs_approval(name)
            if asks and not (self.approver is not None and await self.approver(name, arguments)):
                raise PolicyDenied(
                    f"tool {name!r} needs approval ({self.policy.source}: approve) and it "
                    "was not given"
                )
        except PolicyDenied as exc:
            return _refused(name, exc)
        self.calls_run += 1
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):  # not wait_for: no extra task per call
                output, is_error = await self._run(name, arguments, timeout_s)
        except TimeoutError:
            output, is_error = f"tool {name!r} timed out after {timeout_s:g}s", True
        except PolicyDenied as exc:
            return _refused(name, exc)
        except ToolInputError as exc:
            output, is_error = f"bad arguments for {name!r}: {exc}", True
        except OSError as exc:
            output, is_error = f"{type(exc).__name__}: {exc}", True
        log.info(
            "ran %s in %.0f ms%s",
            name,
            (time.monotonic() - started) * 1000,
            " (error)" if is_error else "",
        )
        return {"output": output, "is_error": is_error}

    async def _run(
        self, name: str, arguments: dict[str, Any], timeout_s: float
    ) -> tuple[Any, bool]:
        builtin = self.builtins.tools.get(name)
        if builtin is not None:
            fn, _spec = builtin
            if name == "shell":
                arguments = {"timeout_s": timeout_s, **arguments}
            return await fn(arguments), False
        found = self.mcp.owner_of(name)
        if found is not None:
            server, tool = found
            return await server.call(tool, arguments, timeout_s)
        raise OpError(
            "not_found",
            f"the daemon has no tool {name!r} (its tools: "
            f"{', '.join(s['name'] for s in self.specs())})",
        )


def _reply(call_id: str, task: asyncio.Task[dict[str, Any]]) -> wire.Reply:
    """The reply to a finished tool call's task."""
    if task.cancelled():
        return wire.Reply(id=call_id, body=CANCELLED_RESULT)
    exc = task.exception()
    if exc is not None:
        return _failure(call_id, exc, f"tool call {call_id}")
    return wire.Reply(id=call_id, body=task.result())


def _failure(call_id: str, exc: BaseException, what: str) -> wire.Reply:
    """The reply of a failed operation: an :class:`OpError` as it says, anything else (a
    bug of the daemon, logged) as ``internal``."""
    if isinstance(exc, OpError):
        return wire.Reply(id=call_id, ok=False, error=exc.info)
    log.error("%s failed", what, exc_info=exc)
    error = ErrorInfo(code="internal", message=f"{type(exc).__name__}: {exc}")
    return wire.Reply(id=call_id, ok=False, error=error)


def _refused(name: str, exc: PolicyDenied) -> dict[str, Any]:
    """A policy refusal as the call's result: the agent sees it as a tool error."""
    log.warning("refused %s: %s", name, exc)
    return {"output": f"refused by the daemon's policy: {exc}", "is_error": True, "denied": True}
