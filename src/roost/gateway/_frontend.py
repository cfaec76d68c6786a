"""The gateway's frontend proxy: a browser's views of its user's own machine.

A signed-in user (a personal access token or the platform's JWT) reaches *their own*
daemon, through whichever gateway holds it, for:

* files (``fs.list``, ``fs.read``, ``fs.write``) and background processes
  (``process.start``, ``process.list``, ``process.kill``, ``process.logs``) inside the
  daemon's roots and policy; ``status`` of the daemon;
* terminals: an interactive shell on a real PTY on the daemon, streamed both ways.

Every operation acts for the caller's user id and no other: there is no way to name another
user. Reading needs the ``read`` scope; writing, starting or killing processes and opening a
terminal need ``machine:write`` (a daemon-scoped token has neither).

:class:`DaemonFrontend` is the logic; :func:`frontend_handler` serves it over gRPC
(``roost.tools.v1.Frontend``: unary ``Call`` and a bidirectional ``Terminal`` stream, JSON
in bytes) and :func:`terminal_websocket` over a WebSocket for browsers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from roost.auth import Authenticator, InvalidCredential, Principal
from roost.bus import Bus, Delivery, Subscription
from roost.gateway._caller import START_HINT, DaemonCaller, DaemonUnavailable
from roost.protocol import ProtocolError, RoostError, new_id, subjects
from roost.protocol import daemon as wire
from roost.rpc import bearer_token

log = logging.getLogger("roost.gateway.frontend")

FRONTEND_SERVICE = "roost.tools.v1.Frontend"

#: operation -> the scope it needs
FRONTEND_OPS: dict[str, str] = {
    "status": "read",
    "fs.list": "read",
    "fs.read": "read",
    "fs.write": "machine:write",
    "process.list": "read",
    "process.logs": "read",
    "process.start": "machine:write",
    "process.kill": "machine:write",
}
TERMINAL_SCOPE = "machine:write"
OP_TIMEOUT_S = 30.0


class FrontendRefused(RoostError):
    """The caller is not signed in (no credential, or a bad one)."""

    code = "auth"


class FrontendForbidden(FrontendRefused):
    """The caller is signed in, but their token lacks the operation's scope."""


class TerminalSession:
    """An open terminal on a user's daemon: send keystrokes, read its output."""

    def __init__(self, bus: Bus, user: str, terminal_id: str) -> None:
        self.bus = bus
        self.user = user
        self.id = terminal_id
        self.output: asyncio.Queue[wire.TerminalOutput] = asyncio.Queue()
        self.info: dict[str, Any] = {}
        self._subscription: Subscription | None = None

    async def _listen(self) -> None:
        async def received(delivery: Delivery) -> None:
            try:
                frame = wire.decode_daemon_frame(delivery.data)
            except ProtocolError as exc:
                log.warning("terminal %s: dropped %s", self.id, exc)
                return
            if isinstance(frame, wire.TerminalOutput) and frame.terminal == self.id:
                self.output.put_nowait(frame)

        self._subscription = await self.bus.subscribe(
            subjects.terminal(self.user, self.id), received
        )

    async def send(self, data: bytes = b"", *, rows: int = 0, cols: int = 0) -> None:
        """Keystrokes (and/or a new size) for the terminal."""
        await self._publish(wire.TerminalInput(terminal=self.id, data=data, rows=rows, cols=cols))

    async def _publish(self, frame: wire.TerminalInput) -> None:
        subject = subjects.terminal_input(self.user, self.id)
        await self.bus.publish(subject, wire.encode_frame(frame))

    async def frames(self) -> AsyncIterator[wire.TerminalOutput]:
        """The terminal's output until it closes."""
        while True:
            frame = await self.output.get()
            yield frame
            if frame.closed:
                return

    async def close(self) -> None:
        """Hang up the shell and stop listening."""
        with contextlib.suppress(RoostError):
            await self._publish(wire.TerminalInput(terminal=self.id, close=True))
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None


class DaemonFrontend:
    """A user's operations on their own daemon, over ``bus``, checked with ``auth``."""

    def __init__(self, bus: Bus, auth: Authenticator, *, caller: DaemonCaller | None = None):
        self.bus = bus
        self.auth = auth
        self.caller = caller or DaemonCaller(bus)

    async def principal(self, token: str, scope: str) -> Principal:
        """Who ``token`` is, if it may use ``scope``; else :class:`FrontendRefused`."""
        try:
            principal = await self.auth.authenticate(token) if token else None
        except InvalidCredential as exc:
            raise FrontendRefused(str(exc)) from None
        if principal is None:
            raise FrontendRefused("sign in: a valid access token (Authorization: Bearer ...)")
        if not principal.allows(scope):
            raise FrontendForbidden(f"this token lacks the {scope!r} scope")
        return principal

    async def _require_daemon(self, user: str) -> None:
        # a browser waits no long timeout for a daemon that is not there: it is told at once
        if await self.caller.online(user) is None:
            raise DaemonUnavailable(f"your tools daemon is not connected: {START_HINT}")

    async def call(self, token: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run ``op`` on the caller's daemon; its result, or a :class:`RoostError`."""
        scope = FRONTEND_OPS.get(op)
        if scope is None:
            raise FrontendRefused(f"no operation {op!r} (operations: {', '.join(FRONTEND_OPS)})")
        principal = await self.principal(token, scope)
        await self._require_daemon(principal.id)
        reply = await self.caller.call(principal.id, op, body, timeout_s=OP_TIMEOUT_S)
        if not reply.ok:
            raise RoostError.from_info(reply.error) if reply.error else RoostError(f"{op} failed")
        return reply.body

    async def open_terminal(
        self, token: str, *, rows: int = 24, cols: int = 80, cwd: str = ""
    ) -> TerminalSession:
        """Open a terminal on the caller's daemon, listening before it starts (so its first
        output, the prompt, is not lost)."""
        principal = await self.principal(token, TERMINAL_SCOPE)
        await self._require_daemon(principal.id)
        session = TerminalSession(self.bus, principal.id, new_id())
        await session._listen()
        body = {"terminal": session.id, "rows": rows, "cols": cols, "cwd": cwd}
        try:
            reply = await self.caller.call(
                principal.id, "terminal.open", body, timeout_s=OP_TIMEOUT_S
            )
            if not reply.ok:
                raise RoostError.from_info(reply.error) if reply.error else RoostError("refused")
        except BaseException:
            await session.close()
            raise
        session.info = reply.body
        return session


# --- gRPC ---------------------------------------------------------------------------------

_STATUS = {
    "auth": grpc.StatusCode.UNAUTHENTICATED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "invalid_request": grpc.StatusCode.INVALID_ARGUMENT,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
}


async def _abort(context: grpc.aio.ServicerContext[bytes, bytes], exc: RoostError) -> None:
    status = _STATUS.get(exc.code, grpc.StatusCode.FAILED_PRECONDITION)
    if isinstance(exc, FrontendForbidden):
        status = grpc.StatusCode.PERMISSION_DENIED
    await context.abort(status, str(exc))


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RoostError(f"not JSON: {exc}", code="invalid_request") from None
    if not isinstance(value, dict):
        raise RoostError("expected a JSON object", code="invalid_request")
    return value


def frontend_handler(frontend: DaemonFrontend) -> grpc.GenericRpcHandler[bytes, bytes]:
    """``roost.tools.v1.Frontend``: ``Call`` takes ``{"op", "body"}`` and answers the
    operation's result; ``Terminal`` takes ``{"rows", "cols", "cwd"}`` first, then
    ``{"data"}`` (base64 in JSON: use bytes fields) / ``{"rows", "cols"}`` / ``{"close"}``
    messages, and streams ``{"data"}`` then ``{"closed", "exit_code"}``. The bearer token
    rides in the ``authorization`` metadata."""

    async def call(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            message = _json(request)
            body = message.get("body") or {}
            if not isinstance(body, dict):
                raise RoostError("'body' must be an object", code="invalid_request")
            token = bearer_token(context.invocation_metadata())
            result = await frontend.call(token, str(message.get("op", "")), body)
        except RoostError as exc:
            await _abort(context, exc)
            raise AssertionError("unreachable") from None
        return msgspec.json.encode(result)

    async def terminal(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        token = bearer_token(context.invocation_metadata())
        try:
            first = _json(await anext(aiter(requests)))
            session = await frontend.open_terminal(
                token,
                rows=int(first.get("rows") or 24),
                cols=int(first.get("cols") or 80),
                cwd=str(first.get("cwd") or ""),
            )
        except StopAsyncIteration:
            return
        except (RoostError, ValueError) as exc:
            error = exc if isinstance(exc, RoostError) else RoostError(str(exc))
            await _abort(context, error)
            return

        async def pump_input() -> None:
            async for data in requests:
                try:
                    message = msgspec.json.decode(data, type=_TerminalMessage)
                except msgspec.DecodeError as exc:
                    log.warning("terminal %s: dropped a bad message: %s", session.id, exc)
                    continue
                if message.close:
                    await session.close()
                    return
                await session.send(message.data, rows=message.rows, cols=message.cols)

        pump = asyncio.create_task(pump_input())
        try:
            yield msgspec.json.encode({"terminal": session.id, **session.info})
            async for frame in session.frames():
                out = _TerminalOut(data=frame.data, closed=frame.closed, exit_code=frame.exit_code)
                yield msgspec.json.encode(out)
        finally:
            pump.cancel()
            await session.close()

    return grpc.method_handlers_generic_handler(
        FRONTEND_SERVICE,
        {
            "Call": grpc.unary_unary_rpc_method_handler(call),
            "Terminal": grpc.stream_stream_rpc_method_handler(terminal),
        },
    )


class _TerminalMessage(msgspec.Struct, omit_defaults=True):
    data: bytes = b""
    rows: int = 0
    cols: int = 0
    close: bool = False


class _TerminalOut(msgspec.Struct, omit_defaults=True):
    data: bytes = b""
    closed: bool = False
    exit_code: int | None = None


# --- WebSocket ----------------------------------------------------------------------------

TERMINAL_WS_PATH = "/api/v1/terminal/ws"


def terminal_websocket(frontend: DaemonFrontend) -> Any:
    """A Starlette WebSocket endpoint for a browser's terminal (:data:`TERMINAL_WS_PATH`).

    The browser's first message is text, ``{"token", "rows", "cols", "cwd"}`` (a browser
    cannot set headers on a WebSocket, and a token in the URL would land in logs); the
    answer is ``{"terminal", "pid", ...}`` or ``{"error": {"code", "message"}}`` and a close
    (4401 not signed in, 4403 no ``machine:write`` scope, 4404 no daemon, 1011 otherwise). Then
    binary messages are keystrokes both ways (output from the shell), and text
    ``{"resize": [rows, cols]}`` or ``{"close": true}`` steer it; when the shell ends the
    server sends ``{"closed": true, "exit_code": n}`` and closes.
    """

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            first = _json((await asyncio.wait_for(websocket.receive_text(), 30)).encode())
            session = await frontend.open_terminal(
                str(first.get("token") or ""),
                rows=int(first.get("rows") or 24),
                cols=int(first.get("cols") or 80),
                cwd=str(first.get("cwd") or ""),
            )
        except (TimeoutError, WebSocketDisconnect, KeyError, ValueError, RoostError) as exc:
            error = exc if isinstance(exc, RoostError) else RoostError(f"expected the open: {exc}")
            close = {"auth": 4401, "unavailable": 4404}.get(error.code, 1011)
            if isinstance(error, FrontendForbidden):
                close = 4403
            with contextlib.suppress(Exception):
                await websocket.send_json({"error": {"code": error.code, "message": str(error)}})
                await websocket.close(close)
            return
        await websocket.send_json({"terminal": session.id, **session.info})

        async def pump_input() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes"):
                    await session.send(message["bytes"])
                elif message.get("text"):
                    try:
                        control = _json(message["text"].encode())
                    except RoostError:
                        continue  # a bad control message: ignored, the terminal goes on
                    if control.get("close"):
                        await session.close()
                        return
                    size = control.get("resize")
                    if isinstance(size, list) and len(size) == 2:
                        await session.send(rows=int(size[0]), cols=int(size[1]))

        pump = asyncio.create_task(pump_input())
        try:
            async for frame in session.frames():
                if frame.closed:
                    await websocket.send_json({"closed": True, "exit_code": frame.exit_code})
                    break
                await websocket.send_bytes(frame.data)
            await websocket.close(1000)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the browser went away
        finally:
            pump.cancel()
            await session.close()

    return endpoint
