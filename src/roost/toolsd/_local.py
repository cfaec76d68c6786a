"""The tools daemon of local mode: the same :class:`ToolHost`, in the platform's process.

In the monolith there is no gateway to dial: daemon tools run here, on the machine the user
is at, under the same policy file and MCP configuration a connected daemon would read.
:class:`LocalDaemon` answers the calls a gateway would route to a user's daemon, with the
same operations and replies, so the tool service cannot tell them apart. It starts the host
(and its MCP servers) on first use.
"""

from __future__ import annotations

import asyncio
from typing import Any

from roost.protocol import ErrorInfo, new_id
from roost.protocol import daemon as wire
from roost.toolsd._host import HostConfig, ToolHost


class LocalDaemon:
    """Daemon operations answered in this process, for the runs of ``owners``.

    The tools run as the user running this process, on this machine: by default only runs
    with no owner (started here, by the CLI of whoever runs it) get them. A run of a signed-in
    user of an API server on this process gets them only if that user is listed, so a
    monolith shared by several users does not hand its shell to all of them.
    """

    def __init__(self, config: HostConfig, *, owners: frozenset[str] = frozenset({""})) -> None:
        self.config = config
        self.owners = owners
        self._host: ToolHost | None = None
        self._starting = asyncio.Lock()

    async def host(self) -> ToolHost:
        """The tools host, started (policy read, MCP servers up) on the first call."""
        async with self._starting:
            if self._host is None:
                host = ToolHost(self.config)
                await host.start()
                self._host = host
            return self._host

    async def online(self, user: str, *, grant: str = "") -> dict[str, Any] | None:
        """The host's status (a local daemon is always there), or ``None`` for an owner it
        does not serve."""
        if user not in self.owners:
            return None
        return (await self.host()).status()

    async def call(
        self,
        user: str,
        op: str,
        body: dict[str, Any] | None = None,
        *,
        timeout_s: float = 60.0,
        call_id: str | None = None,
        grant: str = "",
    ) -> wire.DaemonReply:
        """Run ``op`` as a connected daemon would (see ``DaemonCaller.call``; ``grant`` is
        not needed: the process that ran the run answers it)."""
        call = wire.Call(id=call_id or new_id(), op=op, body=body or {}, timeout_s=timeout_s)
        if user not in self.owners:
            refusal = ErrorInfo(
                code="auth",
                message=(
                    f"daemon tools run in this process only for its own runs, and user "
                    f"{user!r} is not one of [tools] local_owners: a platform serving several "
                    'users should set [tools] daemon = "gateway", so each reaches their own'
                ),
            )
            return wire.DaemonReply(id=call.id, ok=False, error=refusal)
        host = await self.host()
        reply = await host.answer(call)
        return wire.DaemonReply(id=reply.id, ok=reply.ok, body=reply.body, error=reply.error)

    async def close(self) -> None:
        if self._host is not None:
            await self._host.close()
            self._host = None
