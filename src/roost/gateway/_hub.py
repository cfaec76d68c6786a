"""The gateway's daemon connections: the gRPC stream daemons dial, and the calls made on them.

A gateway is stateful: it holds the streams of the daemons that connected to it, at most one
per user (a new one replaces the old, which is told why and does not come back). It beats on
every stream each ``heartbeat_s`` and drops a daemon silent for ``silence_limit_s``. Whoever
wants a daemon operation calls :meth:`DaemonHub.call`; the NATS bridge is one such caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from roost.protocol import ErrorInfo, ProtocolError
from roost.protocol import daemon as wire
from roost.rpc import bearer_token

log = logging.getLogger("roost.gateway")

Authenticate = Callable[[str], Awaitable[str]]
"""Checks a daemon's bearer token: the user id it belongs to, or raises
:class:`PermissionError` with the reason (the daemon is told and stops)."""


PRESENCE_RACE_S = 0.5
"""Two daemons of one user accepted by two gateways within this long of each other (far
more than a notice takes over NATS) are a race, settled by connection id; otherwise the
later one stays."""

TerminalSink = Callable[[str, wire.TerminalOutput], None]
"""Where a daemon's terminal output goes: ``(user, frame)``."""


class DaemonOffline(Exception):
    """No daemon of this user is connected here (or it went away during the call)."""


class DaemonConnection:
    """One connected daemon stream."""

    def __init__(
        self,
        user: str,
        hello: wire.Hello,
        token: str = "",
        on_terminal: TerminalSink | None = None,
    ) -> None:
        self.user = user
        self.on_terminal = on_terminal
        self.token = token  # re-checked on every beat: a revoked token is disconnected
        self.hello = hello
        self.id = uuid.uuid4().hex
        self.connected_at = time.time()
        self.accepted = time.monotonic()
        self.last_seen = time.monotonic()
        self.outbox: asyncio.Queue[wire.GatewayFrame | None] = asyncio.Queue()
        self.pending: dict[str, list[asyncio.Future[wire.Reply]]] = {}
        self.closed = asyncio.Event()

    def send(self, frame: wire.GatewayFrame) -> None:
        if not self.closed.is_set():
            self.outbox.put_nowait(frame)

    def close(self, goodbye: wire.Goodbye | None = None) -> None:
        """End the stream (after ``goodbye``); calls still waiting fail as offline."""
        if self.closed.is_set():
            return
        if goodbye is not None:
            self.outbox.put_nowait(goodbye)
        self.outbox.put_nowait(None)
        self.closed.set()
        for waiters in self.pending.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(DaemonOffline(f"the daemon of {self.user} disconnected"))
        self.pending.clear()

    async def call(self, call: wire.Call) -> wire.Reply:
        """Send ``call`` and wait (``call.timeout_s`` plus a margin) for its reply. A repeat
        of a call id still waiting is not sent again: it waits for the same reply."""
        waiters = self.pending.get(call.id)
        if waiters is None:
            waiters = self.pending[call.id] = []
            self.send(call)
        # a future per waiter: one that gives up cancels only its own (no shield needed)
        future: asyncio.Future[wire.Reply] = asyncio.get_running_loop().create_future()
        waiters.append(future)
        try:
            async with asyncio.timeout(call.timeout_s + 5.0):  # cheaper than wait_for: no task
                return await future
        finally:
            if future in waiters:
                waiters.remove(future)
            if not waiters and self.pending.get(call.id) is waiters:
                del self.pending[call.id]

    def received(self, frame: wire.DaemonFrame) -> None:
        self.last_seen = time.monotonic()
        if isinstance(frame, wire.Reply):
            for future in self.pending.pop(frame.id, ()):
                if not future.done():
                    future.set_result(frame)
        elif isinstance(frame, wire.TerminalOutput) and self.on_terminal is not None:
            self.on_terminal(self.user, frame)

    def info(self) -> dict[str, Any]:
        return {
            "connection": self.id,
            "user": self.user,
            "daemon_id": self.hello.daemon_id,
            "hostname": self.hello.hostname,
            "pid": self.hello.pid,
            "version": self.hello.version,
            "connected_at": self.connected_at,
            "tools": [t.get("name") for t in self.hello.tools],
        }


class DaemonHub:
    """The daemon streams one gateway holds, and the gRPC handler that accepts them.

    Each beat also re-checks the connection's token, so a revoked token (or a disabled
    user) loses its daemon within a beat plus the authenticator's cache bound."""

    def __init__(
        self,
        authenticate: Authenticate,
        *,
        gateway_id: str | None = None,
        heartbeat_s: float = wire.HEARTBEAT_S,
        silence_limit_s: float = wire.SILENCE_LIMIT_S,
    ) -> None:
        self.authenticate = authenticate
        self.gateway_id = gateway_id or uuid.uuid4().hex[:12]
        self.heartbeat_s = heartbeat_s
        self.silence_limit_s = silence_limit_s
        self.connections: dict[str, DaemonConnection] = {}
        self.on_terminal: TerminalSink | None = None
        """Set by the bus bridge: terminal output of every daemon held here."""
        self.on_connect: Callable[[DaemonConnection], None] | None = None
        """Set by the bus bridge: a daemon was accepted here (other gateways are told)."""

    # --- for callers ------------------------------------------------------------------

    def holder(self, user: str) -> DaemonConnection | None:
        """The connection of ``user``'s daemon, if it is held here."""
        connection = self.connections.get(user)
        return connection if connection is not None and not connection.closed.is_set() else None

    async def call(
        self, user: str, op: str, body: dict[str, Any], *, timeout_s: float, call_id: str
    ) -> wire.DaemonReply:
        """Run ``op`` on ``user``'s daemon; :class:`DaemonOffline` if it is not here."""
        connection = self.holder(user)
        if connection is None:
            raise DaemonOffline(f"no daemon of {user} is connected to gateway {self.gateway_id}")
        try:
            reply = await connection.call(
                wire.Call(id=call_id, op=op, body=body, timeout_s=timeout_s)
            )
        except TimeoutError:
            connection.send(wire.Cancel(id=call_id))
            return wire.DaemonReply(
                id=call_id,
                ok=False,
                error=ErrorInfo(
                    code="timeout", message=f"the daemon did not answer {op} in {timeout_s:g}s"
                ),
                gateway=self.gateway_id,
                connection=connection.id,
            )
        return wire.DaemonReply(
            id=call_id,
            ok=reply.ok,
            body=reply.body,
            error=reply.error,
            gateway=self.gateway_id,
            connection=connection.id,
        )

    def replaced_elsewhere(self, presence: wire.DaemonPresence) -> bool:
        """Another gateway accepted a daemon of ``presence.user``: let an older one held
        here go (told why, not to come back). Whether one was let go."""
        held = self.holder(presence.user)
        if held is None or held.id == presence.connection:
            return False
        # a notice is sent the moment its daemon is accepted, so one held here for longer
        # than notices take is the older; two daemons accepted at once (each gateway hears
        # of the other's) are told apart by their ids, the same way on both gateways
        racing = time.monotonic() - held.accepted < PRESENCE_RACE_S
        if racing and held.id > presence.connection:
            return False  # ours stays: the other gateway lets its own go
        log.info(
            "daemon of %s on %s replaced by one on gateway %s",
            presence.user,
            held.hello.hostname,
            presence.gateway,
        )
        self._drop(
            held,
            wire.Goodbye(
                kind="replaced",
                reason=f"another daemon of this user connected (to gateway {presence.gateway})",
                reconnect=False,
            ),
        )
        return True

    def disconnect(
        self, user: str, kind: wire.GoodbyeKind, reason: str, *, reconnect: bool
    ) -> bool:
        """Close ``user``'s daemon stream with a goodbye; whether one was held here."""
        connection = self.connections.pop(user, None)
        if connection is None:
            return False
        connection.close(wire.Goodbye(kind=kind, reason=reason, reconnect=reconnect))
        return True

    def close_all(self, reason: str = "the gateway is shutting down") -> None:
        for user in list(self.connections):
            self.disconnect(user, "shutdown", reason, reconnect=True)

    # --- the gRPC side ----------------------------------------------------------------

    def handler(self) -> grpc.GenericRpcHandler[bytes, bytes]:
        """The generic handler of :data:`~roost.protocol.daemon.CONNECT_METHOD`."""
        return grpc.method_handlers_generic_handler(
            wire.DAEMON_SERVICE,
            {"Connect": grpc.stream_stream_rpc_method_handler(self._connect)},
        )

    async def _connect(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        token = bearer_token(context.invocation_metadata())
        try:
            user = await self.authenticate(token)
        except PermissionError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            return
        try:
            first = await asyncio.wait_for(anext(aiter(requests)), 30.0)
            hello = wire.decode_daemon_frame(first)
        except (TimeoutError, StopAsyncIteration, ProtocolError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expected a hello frame: {exc}")
            return
        if not isinstance(hello, wire.Hello):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first frame must be a hello")
            return
        connection = DaemonConnection(user, hello, token, self._terminal_output)
        previous = self.connections.get(user)
        self.connections[user] = connection
        if previous is not None:
            log.info(
                "daemon of %s on %s replaces the one on %s",
                user,
                hello.hostname,
                previous.hello.hostname,
            )
            previous.close(
                wire.Goodbye(
                    kind="replaced",
                    reason="another daemon of this user connected "
                    f"(on {hello.hostname or 'another host'})",
                    reconnect=False,
                )
            )
        log.info("daemon of %s connected from %s (%s)", user, hello.hostname, connection.id)
        if self.on_connect is not None:
            self.on_connect(connection)
        connection.send(
            wire.Welcome(
                connection=connection.id,
                gateway=self.gateway_id,
                user=user,
                heartbeat_s=self.heartbeat_s,
            )
        )
        reader = asyncio.create_task(self._read(connection, requests))
        beater = asyncio.create_task(self._beat(connection))
        try:
            while (frame := await connection.outbox.get()) is not None:
                yield wire.encode_frame(frame)
        finally:
            reader.cancel()
            beater.cancel()
            self._drop(connection)
            log.info("daemon of %s disconnected (%s)", user, connection.id)

    def _terminal_output(self, user: str, frame: wire.TerminalOutput) -> None:
        if self.on_terminal is not None:
            self.on_terminal(user, frame)

    def _drop(self, connection: DaemonConnection, goodbye: wire.Goodbye | None = None) -> None:
        """Close ``connection`` (after ``goodbye``) and forget it, unless a newer one of its
        user has taken its place."""
        connection.close(goodbye)
        if self.connections.get(connection.user) is connection:
            del self.connections[connection.user]

    async def _read(self, connection: DaemonConnection, requests: AsyncIterator[bytes]) -> None:
        try:
            async for data in requests:
                try:
                    connection.received(wire.decode_daemon_frame(data))
                except ProtocolError as exc:  # a bad frame is logged; the stream goes on
                    log.warning("daemon of %s sent %s", connection.user, exc)
        except Exception as exc:  # the stream broke
            log.info("daemon stream of %s ended: %s", connection.user, exc)
        connection.close()

    async def _beat(self, connection: DaemonConnection) -> None:
        while not connection.closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connection.closed.wait(), self.heartbeat_s)
            if connection.closed.is_set():
                return
            if time.monotonic() - connection.last_seen > self.silence_limit_s:
                log.warning(
                    "daemon of %s silent for %.0fs: disconnected",
                    connection.user,
                    self.silence_limit_s,
                )
                self._drop(
                    connection,
                    wire.Goodbye(kind="silent", reason=f"no frame for {self.silence_limit_s:g}s"),
                )
                return
            try:  # the token may have been revoked (or its user disabled) since
                await self.authenticate(connection.token)
            except PermissionError as exc:
                log.warning("daemon of %s disconnected: %s", connection.user, exc)
                self._drop(
                    connection,
                    wire.Goodbye(kind="revoked", reason=f"token revoked: {exc}", reconnect=False),
                )
                return
            except Exception:  # the principal store is unreachable: keep the daemon
                log.exception("could not re-check the token of %s's daemon", connection.user)
            connection.send(wire.Beat())


async def start_daemon_server(
    hub: DaemonHub,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Serve the daemon stream of ``hub`` on ``host:port`` (0: a free port); the server and
    its port. Without ``credentials`` it is h2c (put TLS in front, or pass them)."""
    server = grpc.aio.server(
        options=[
            # daemons keep one idle stream each: let their keepalive pings through
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
    )
    server.add_generic_rpc_handlers((hub.handler(),))
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    await server.start()
    return server, bound
