"""Calling a user's tools daemon from anywhere on the bus (a worker, an API server).

:class:`DaemonCaller` sends a :class:`~roost.protocol.daemon.DaemonRequest` on the user's
request-reply subject and waits for the gateway holding the daemon. It re-sends the *same*
call id every ``resend_s`` until the deadline: if the holding gateway died, the daemon
reconnects to another one and the re-sent call reaches it there. The daemon runs a call id
at most once (a repeat joins the running call or gets its kept result), so re-sending never
runs a tool twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from roost.bus import Bus
from roost.protocol import (
    NoRespondersError,
    ProtocolError,
    RoostError,
    ServiceTimeoutError,
    ServiceUnavailableError,
    new_id,
    subjects,
)
from roost.protocol import daemon as wire

START_HINT = "start it on your machine with `roost daemon start`"


class DaemonUnavailable(ServiceUnavailableError):
    """The user's daemon is not connected to any gateway (retryable: it may come back)."""


class DaemonCaller:
    """Daemon operations for any user, over ``bus``."""

    def __init__(
        self,
        bus: Bus,
        *,
        resend_s: float = 5.0,
        online_timeout_s: float = 1.5,
        online_ttl_s: float = 2.0,
    ) -> None:
        self.bus = bus
        self.resend_s = resend_s
        self.online_timeout_s = online_timeout_s
        self.online_ttl_s = online_ttl_s
        self._online: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def online(self, user: str, *, grant: str = "") -> dict[str, Any] | None:
        """The connected daemon's description, or ``None`` when no gateway holds one
        (cached ``online_ttl_s``, so a burst of calls asks once). A run asks with its
        ``grant``; a refused grant raises ``RoostError`` (code ``auth``)."""
        cached = self._online.get(user)
        if cached is not None and time.monotonic() - cached[0] < self.online_ttl_s:
            return cached[1]
        request = wire.DaemonRequest(
            user=user, op="online", timeout_s=self.online_timeout_s, grant=grant
        )
        try:
            reply = await self._ask(_subject(request), request, self.online_timeout_s)
            if not reply.ok and reply.error is not None and reply.error.code == "auth":
                raise RoostError.from_info(reply.error)
            info = reply.body if reply.ok else None
        except (NoRespondersError, ServiceTimeoutError):
            info = None
        self._online[user] = (time.monotonic(), info)
        return info

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
        """Run ``op`` on ``user``'s daemon. Raises :class:`DaemonUnavailable` when no daemon
        answers within ``timeout_s``; a failed operation is a reply with ``ok=False``.

        A run's operations (:data:`~roost.protocol.daemon.RUN_OPS`) go on the user's tools
        subject with the run's ``grant``; the platform's own go on the command subject."""
        request = wire.DaemonRequest(
            user=user,
            op=op,
            body=body or {},
            timeout_s=timeout_s,
            id=call_id or new_id(),
            grant=grant,
        )
        subject = _subject(request)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DaemonUnavailable(
                    f"no tools daemon of user {user!r} answered {op} within {timeout_s:g}s: "
                    f"{START_HINT}"
                )
            try:
                reply = await self._ask(subject, request, min(left, self.resend_s))
            except NoRespondersError:  # no gateway runs at all: wait for one, briefly
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                continue
            except ServiceTimeoutError:
                continue  # no holder answered yet: re-send the same id
            if not reply.ok and reply.error is not None and reply.error.code == "unavailable":
                continue  # the holder lost the daemon mid-call: it may be reconnecting
            self._online.pop(user, None)
            return reply

    async def _ask(
        self, subject: str, request: wire.DaemonRequest, timeout: float
    ) -> wire.DaemonReply:
        data = await self.bus.request(subject, wire.encode_frame(request), timeout=timeout)
        try:
            return wire.decode_daemon_reply(data)
        except ProtocolError as exc:
            raise RoostError(f"a gateway answered {request.op} with garbage: {exc}") from None


def _subject(request: wire.DaemonRequest) -> str:
    if request.op in wire.RUN_OPS and (request.grant or request.op != "online"):
        return subjects.tools_sync(request.user)
    return subjects.daemon_command(request.user)
