"""MCP servers the daemon connects to, with the official ``mcp`` SDK as client.

The configuration is the standard ``mcpServers`` JSON that desktop MCP clients use
(``mcp.json`` in the daemon's config directory)::

    {"mcpServers": {
        "files": {"command": "npx",
                  "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
        "search": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ..."}}
    }}

An entry with ``command`` is a stdio server (the daemon starts it); one with ``url`` is a
Streamable HTTP server. Each server's tools are offered as ``<server>.<tool>``.

Each server's client lives in a task of its own: the SDK's client is an anyio context whose
task group must be entered and left in one task, so calls reach it through a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("roost.toolsd.mcp")

SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
CONNECT_TIMEOUT_S = 30.0


class McpConfigError(Exception):
    """The MCP configuration is invalid (the message names the file and the entry)."""


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def load_mcp_config(path: Path) -> list[McpServerConfig]:
    """The servers of an ``mcpServers`` file (none if the file does not exist)."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise McpConfigError(f"{path}: not valid JSON: {exc}") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(f"{path}: expected an object with 'mcpServers'")
    found: list[McpServerConfig] = []
    for name, entry in servers.items():
        where = f"{path}: mcpServers.{name}"
        if not SERVER_NAME.match(name):
            raise McpConfigError(f"{where}: a server name is letters, digits, '-' and '_'")
        if not isinstance(entry, dict):
            raise McpConfigError(f"{where}: expected an object")
        if entry.get("disabled"):
            continue
        command, url = entry.get("command", ""), entry.get("url", "")
        if bool(command) == bool(url):
            raise McpConfigError(f"{where}: give either 'command' (stdio) or 'url' (HTTP)")
        args, env, headers = entry.get("args", []), entry.get("env", {}), entry.get("headers", {})
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise McpConfigError(f"{where}.args: expected a list of strings")
        for key, value in (("env", env), ("headers", headers)):
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise McpConfigError(f"{where}.{key}: expected an object of strings")
        found.append(
            McpServerConfig(
                name=name,
                command=command,
                args=tuple(args),
                env=dict(env),
                cwd=entry.get("cwd"),
                url=url,
                headers=dict(headers),
            )
        )
    return found


def _content_text(result: Any) -> Any:
    """A CallToolResult as one JSON value: structured content if any, else its text."""
    if result.structured_content is not None:
        return result.structured_content
    parts: list[str] = []
    for block in result.content:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')}]")
    return "\n".join(parts)


_Job = tuple[str, dict[str, Any], float, "asyncio.Future[tuple[Any, bool]]"]


class McpServer:
    """One connected MCP server: its tools, and calls to them."""

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self.tools: dict[str, dict[str, Any]] = {}
        self.error = ""
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and list the tools; a server that fails is kept with its ``error``."""
        self._task = asyncio.create_task(self._serve(), name=f"mcp-{self.name}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        if not self._ready.is_set():
            self.error = f"no answer within {timeout_s:g}s"
            log.warning("MCP server %s: %s", self.name, self.error)

    def _client(self) -> Any:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters

        if self.config.command:
            params = StdioServerParameters(
                command=self.config.command,
                args=list(self.config.args),
                env=self.config.env or None,
                cwd=self.config.cwd,
            )
            return Client(params)
        if self.config.headers:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(headers=self.config.headers)
            return Client(streamable_http_client(self.config.url, http_client=http))
        return Client(self.config.url)

    async def _serve(self) -> None:
        try:
            async with self._client() as client:
                listing = await client.list_tools()
                for tool in listing.tools:
                    self.tools[tool.name] = {
                        "name": f"{self.name}.{tool.name}",
                        "description": tool.description or "",
                        "parameters": tool.input_schema,
                    }
                self._ready.set()
                log.info("MCP server %s: %d tool(s)", self.name, len(self.tools))
                while (job := await self._jobs.get()) is not None:
                    name, arguments, timeout_s, future = job
                    try:
                        result = await client.call_tool(
                            name, arguments, read_timeout_seconds=timeout_s
                        )
                    except Exception as exc:  # the server's failure, not the daemon's
                        if not future.done():
                            future.set_result((f"MCP error: {exc}", True))
                        continue
                    if not future.done():
                        future.set_result((_content_text(result), bool(result.is_error)))
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("MCP server %s failed: %s", self.name, self.error)
        finally:
            self._ready.set()
            while not self._jobs.empty():
                job = self._jobs.get_nowait()
                if job is not None and not job[3].done():
                    job[3].set_result((f"MCP server {self.name} is not connected", True))

    async def call(
        self, tool: str, arguments: dict[str, Any], timeout_s: float
    ) -> tuple[Any, bool]:
        """Call ``tool`` (its own name, without the server prefix): (output, is_error)."""
        if self._task is None or self._task.done():
            return f"MCP server {self.name} is not connected ({self.error or 'stopped'})", True
        future: asyncio.Future[tuple[Any, bool]] = asyncio.get_running_loop().create_future()
        await self._jobs.put((tool, arguments, timeout_s, future))
        return await asyncio.wait_for(future, timeout_s + 5)

    async def close(self) -> None:
        if self._task is None:
            return
        await self._jobs.put(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 10)
        except (TimeoutError, Exception):
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class McpServers:
    """Every configured MCP server, started together."""

    def __init__(self, configs: list[McpServerConfig]) -> None:
        self.servers = {c.name: McpServer(c) for c in configs}

    async def start(self) -> None:
        await asyncio.gather(*(s.start() for s in self.servers.values()))

    def specs(self) -> list[dict[str, Any]]:
        return [spec for s in self.servers.values() for spec in s.tools.values()]

    def owner_of(self, name: str) -> tuple[McpServer, str] | None:
        """The server and the tool's own name of a ``<server>.<tool>`` name."""
        server, dot, tool = name.partition(".")
        found = self.servers.get(server)
        return (found, tool) if dot and found is not None else None

    def status(self) -> dict[str, Any]:
        return {
            name: {"tools": sorted(s.tools), "error": s.error} for name, s in self.servers.items()
        }

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.servers.values()))
