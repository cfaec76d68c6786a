"""NATS backend (nats-py). Service calls are core NATS request/reply with queue groups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSub

from roost.bus._base import Bus, Delivery, Handler, Subscription, validate_subject
from roost.protocol import NoRespondersError, ServiceTimeoutError, ServiceUnavailableError

log = logging.getLogger("roost.bus.nats")


class _NatsSubscription(Subscription):
    def __init__(self, sub: NatsSub, subject: str, queue: str) -> None:
        self._sub = sub
        self.subject = subject
        self.queue = queue

    async def unsubscribe(self) -> None:
        try:
            await self._sub.unsubscribe()
        except nats.errors.ConnectionClosedError:
            pass
        except nats.errors.BadSubscriptionError:
            pass


class NatsBus(Bus):
    """A bus over a NATS server.

    ``url`` may list several servers separated by commas. The client reconnects forever after
    the first successful connection; the first connection fails after ``connect_timeout``
    seconds with a clear :class:`~roost.protocol.ServiceUnavailableError`.
    """

    name = "nats"

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        client_name: str = "roost",
        connect_timeout: float = 2.0,
        **options: Any,
    ) -> None:
        self.url = url
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.options = options
        self._nc: NatsClient | None = None

    @property
    def client(self) -> NatsClient:
        """The underlying nats-py client (for JetStream and other NATS-only features)."""
        if self._nc is None:
            raise ServiceUnavailableError("NATS bus is not connected; call connect() first")
        return self._nc

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        if self._nc is not None:
            return
        servers = [s.strip() for s in self.url.split(",") if s.strip()]

        async def on_error(exc: Exception) -> None:
            log.warning("NATS error: %s", exc)

        async def on_disconnect() -> None:
            if self._nc is not None:  # not while the first connection is still being made
                log.warning("disconnected from NATS")

        async def on_reconnect() -> None:
            log.info("reconnected to NATS")

        # nats-py retries the *first* connection forever when max_reconnect_attempts is -1
        # (what we want after a successful connect), so bound the first one ourselves.
        nc = NatsClient()
        options: dict[str, Any] = {
            "servers": servers,
            "name": self.client_name,
            "connect_timeout": self.connect_timeout,
            "allow_reconnect": True,
            "reconnect_time_wait": 0.5,
            "max_reconnect_attempts": -1,
            "error_cb": on_error,
            "disconnected_cb": on_disconnect,
            "reconnected_cb": on_reconnect,
            **self.options,
        }
        try:
            await asyncio.wait_for(nc.connect(**options), timeout=self.connect_timeout)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            last = nc.last_error or exc
            with contextlib.suppress(Exception):
                await nc.close()
            reason = str(last) or type(last).__name__
            raise ServiceUnavailableError(
                f"cannot reach NATS at {self.url} within {self.connect_timeout:g}s ({reason})",
                url=self.url,
            ) from exc
        self._nc = nc

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except Exception:  # closing must not fail; drain can race with a dead server
                await nc.close()

    async def flush(self, timeout: float = 5.0) -> None:
        await self.client.flush(timeout=timeout)  # type: ignore[arg-type]  # takes floats

    async def publish(self, subject: str, data: bytes) -> None:
        validate_subject(subject, wildcards=False)
        await self.client.publish(subject, data)

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        validate_subject(subject, wildcards=False)
        try:
            msg = await self.client.request(subject, data, timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NoRespondersError(f"no service is serving {subject!r}", subject=subject) from None
        except nats.errors.TimeoutError:
            raise ServiceTimeoutError(
                f"no answer on {subject!r} within {timeout:g}s", subject=subject, timeout=timeout
            ) from None
        except nats.errors.ConnectionClosedError as exc:
            raise ServiceUnavailableError(f"NATS connection is closed: {exc}") from exc
        return bytes(msg.data)

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Subscription:
        validate_subject(subject, wildcards=True)

        async def callback(msg: Msg) -> None:
            responder = msg.respond if msg.reply else None
            try:
                await handler(Delivery(msg.subject, msg.data, msg.reply, responder))
            except Exception:  # a faulty handler must not kill the subscription
                log.exception("handler for %s failed", subject)

        sub = await self.client.subscribe(subject, queue=queue, cb=callback)
        return _NatsSubscription(sub, subject, queue)
