"""The NATS tool bridge: how workers and API servers reach a daemon held by some gateway.

Two patterns, on per-user subjects (``roost.protocol.subjects``):

* **request-reply** (``tools_sync(user)``, ``daemon_command(user)``): every gateway
  subscribes; only the one holding the user's daemon answers, the others stay silent. The
  caller gets one answer or, when no gateway holds the daemon, a timeout;
* **fire-and-forget** (``tools_request(user)``): the gateways share a queue group, so
  exactly one takes each request. If it holds the daemon it runs the call, else it forwards
  it as a request-reply to whichever gateway does; either way the :class:`DaemonReply` is
  published on the request's ``reply_to``.

A request whose ``user`` is not its subject's user is dropped and logged: subjects are
what NATS permissions partition, so the body cannot widen them.

The tools subjects carry runs' operations (:data:`~roost.protocol.daemon.RUN_OPS`). With
``grants`` set, a request there is served only if it carries a valid run grant whose owner
is the subject's user, so a process that may publish there (a worker running agents of many
users) still reaches only the daemon of the user whose run it is. The command subject
carries the platform's own operations, for processes the bus permissions let publish there.
"""

from __future__ import annotations

import asyncio
import logging

from roost.auth import GrantError, GrantVerifier
from roost.bus import Bus, Delivery, Subscription
from roost.gateway._hub import DaemonConnection, DaemonHub, DaemonOffline
from roost.protocol import ErrorInfo, ProtocolError, RoostError, subjects
from roost.protocol import daemon as wire

log = logging.getLogger("roost.gateway")

_COMMANDS = subjects.ALL_DAEMON_COMMANDS.removesuffix("*")


class ToolBridge:
    """Serves ``hub``'s daemons to the bus."""

    def __init__(self, hub: DaemonHub, bus: Bus, *, grants: GrantVerifier | None = None) -> None:
        self.hub = hub
        self.bus = bus
        self.grants = grants
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._subscriptions = [
            await self.bus.subscribe(subjects.ALL_TOOLS_SYNC, self._on_request_reply),
            await self.bus.subscribe(subjects.ALL_DAEMON_COMMANDS, self._on_request_reply),
            await self.bus.subscribe(
                subjects.ALL_TOOLS_REQUESTS, self._on_fire_and_forget, queue=subjects.GATEWAY_QUEUE
            ),
            await self.bus.subscribe(subjects.ALL_TERMINAL_INPUT, self._on_terminal_input),
            await self.bus.subscribe(subjects.ALL_DAEMON_PRESENCE, self._on_presence),
        ]
        self.hub.on_terminal = self._terminal_output
        self.hub.on_connect = self._announce

    async def close(self) -> None:
        self.hub.on_terminal = None
        self.hub.on_connect = None
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions = []
        for task in list(self._tasks):
            task.cancel()

    # --- one daemon per user, across gateways --------------------------------------------

    def _announce(self, connection: DaemonConnection) -> None:
        presence = wire.DaemonPresence(
            user=connection.user,
            gateway=self.hub.gateway_id,
            connection=connection.id,
            connected_at=connection.connected_at,
        )
        subject = subjects.daemon_presence(connection.user)
        self._spawn(self.bus.publish(subject, wire.encode_frame(presence)))

    async def _on_presence(self, delivery: Delivery) -> None:
        try:
            presence = wire.decode_daemon_presence(delivery.data)
        except ProtocolError as exc:
            log.warning("dropped a malformed presence notice: %s", exc)
            return
        if presence.user != subjects.user_of(delivery.subject):
            log.warning("dropped a presence notice for another user's subject")
            return
        if presence.gateway != self.hub.gateway_id:
            self.hub.replaced_elsewhere(presence)

    # --- terminals: output from the daemons held here, input to them --------------------

    def _terminal_output(self, user: str, frame: wire.TerminalOutput) -> None:
        try:
            subject = subjects.terminal(user, frame.terminal)
        except ValueError:
            log.warning("dropped output of a terminal with a bad id from %s's daemon", user)
            return
        self._spawn(self.bus.publish(subject, wire.encode_frame(frame)))

    async def _on_terminal_input(self, delivery: Delivery) -> None:
        user = subjects.user_of(delivery.subject)
        holder = self.hub.holder(user)
        if holder is None:
            return  # another gateway holds it (or none does)
        try:
            frame = wire.decode_gateway_frame(delivery.data)
        except ProtocolError as exc:
            log.warning("dropped malformed terminal input on %s: %s", delivery.subject, exc)
            return
        if not isinstance(frame, wire.TerminalInput) or not delivery.subject.endswith(
            f".{frame.terminal}"
        ):
            log.warning("dropped terminal input for another terminal on %s", delivery.subject)
            return
        holder.send(frame)

    def _spawn(self, coroutine: object) -> None:
        # a daemon call may take minutes: never hold the subscription's delivery loop
        task = asyncio.ensure_future(coroutine)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _decode(self, delivery: Delivery) -> wire.DaemonRequest | None:
        user = subjects.user_of(delivery.subject)
        try:
            request = wire.decode_daemon_request(delivery.data)
        except ProtocolError as exc:
            log.warning("dropped a malformed daemon request on %s: %s", delivery.subject, exc)
            return None
        if request.user != user:
            log.warning(
                "dropped a request for user %r sent on %s (another user's subject)",
                request.user,
                delivery.subject,
            )
            return None
        return request

    async def _on_request_reply(self, delivery: Delivery) -> None:
        user = subjects.user_of(delivery.subject)
        if self.hub.holder(user) is None or not delivery.reply:
            return  # another gateway holds it (or none does): stay silent
        request = self._decode(delivery)
        if request is not None:
            self._spawn(self._answer(delivery, request))

    async def _answer(self, delivery: Delivery, request: wire.DaemonRequest) -> None:
        refusal = self._refusal(delivery.subject, request)
        reply = refusal or await self._run(request)
        await delivery.respond(wire.encode_frame(reply))

    def _refusal(self, subject: str, request: wire.DaemonRequest) -> wire.DaemonReply | None:
        """Why a request on a tools subject may not run (``None``: it may)."""
        if subject.startswith(_COMMANDS):
            return None
        if request.op not in wire.RUN_OPS:
            return _failed(
                request.id,
                "invalid_request",
                f"{request.op} is not an operation of runs (the tools subjects carry "
                f"{', '.join(sorted(wire.RUN_OPS))})",
            )
        if self.grants is None:
            return None
        try:
            owner = self.grants.owner_of(request.grant)
        except GrantError as exc:
            log.warning("refused %s for %s: %s", request.op, request.user, exc)
            return _failed(request.id, "auth", f"{request.op}: {exc}")
        if owner != request.user:
            log.warning(
                "refused %s for %s: the run grant is for owner %r", request.op, request.user, owner
            )
            return _failed(
                request.id, "auth", f"{request.op}: the run grant is for another user's run"
            )
        return None

    async def _run(self, request: wire.DaemonRequest) -> wire.DaemonReply:
        if request.op == "online":
            holder = self.hub.holder(request.user)
            if holder is None:
                return _failed(request.id, "unavailable", f"no daemon of {request.user} here")
            return wire.DaemonReply(
                id=request.id, body=holder.info(), gateway=self.hub.gateway_id, connection=holder.id
            )
        try:
            return await self.hub.call(
                request.user,
                request.op,
                request.body,
                timeout_s=request.timeout_s,
                call_id=request.id,
            )
        except DaemonOffline as exc:
            return _failed(request.id, "unavailable", str(exc))

    async def _on_fire_and_forget(self, delivery: Delivery) -> None:
        request = self._decode(delivery)
        if request is not None:
            self._spawn(self._forward(delivery.subject, request))

    async def _forward(self, subject: str, request: wire.DaemonRequest) -> None:
        refusal = self._refusal(subject, request)
        if refusal is not None:
            reply = refusal
        elif self.hub.holder(request.user) is not None:
            reply = await self._run(request)
        else:  # another gateway holds the daemon, if any does: ask them all (grant and all)
            try:
                data = await self.bus.request(
                    subjects.tools_sync(request.user),
                    wire.encode_frame(request),
                    timeout=request.timeout_s + 5.0,
                )
                reply = wire.decode_daemon_reply(data)
            except (RoostError, ProtocolError) as exc:
                reply = _failed(
                    request.id,
                    "unavailable",
                    f"no gateway reached a daemon of {request.user}: {exc}",
                )
        if request.reply_to:
            await self.bus.publish(request.reply_to, wire.encode_frame(reply))


def _failed(call_id: str, code: str, message: str) -> wire.DaemonReply:
    return wire.DaemonReply(id=call_id, ok=False, error=ErrorInfo(code=code, message=message))
