"""NATS backend (nats-py). Service calls are core NATS request/reply with queue groups;
durable delivery is JetStream: streams, publishes acknowledged by the server and
de-duplicated by ``Nats-Msg-Id``, and durable pull consumers with explicit acks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSub
from nats.js import api as js_api

from roost.bus._base import (
    Bus,
    ConsumerOptions,
    Delivery,
    DurableDelivery,
    DurableHandler,
    Handler,
    Reject,
    Stream,
    Subscription,
    cancel_and_wait,
    validate_subject,
)
from roost.protocol import (
    NoRespondersError,
    PayloadTooLargeError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)

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


class _JetStreamConsumption(Subscription):
    """One member of a durable pull consumer: fetches, handles, acks, until unsubscribed.
    Survives a NATS restart: fetches fail while the server is away and resume after."""

    def __init__(
        self,
        psub: Any,
        stream: Stream,
        durable: str,
        handler: DurableHandler,
        options: ConsumerOptions,
    ) -> None:
        self.subject = ",".join(stream.subjects)
        self.queue = durable
        self._psub, self._handler, self._options = psub, handler, options
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        failing = False
        while True:
            try:
                messages = await self._psub.fetch(batch=16, timeout=1.0)
            except nats.errors.TimeoutError:
                continue  # nothing waiting
            except (nats.errors.Error, OSError) as exc:
                if not failing:
                    log.warning("fetching from %s failed (retrying): %s", self.queue, exc)
                failing = True
                await asyncio.sleep(0.5)
                continue
            failing = False
            for msg in messages:
                await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        options = self._options
        attempt = msg.metadata.num_delivered or 1
        msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
        delivery = DurableDelivery(msg.subject, msg.data, msg_id, attempt, options.max_attempts)
        try:
            async with asyncio.timeout(options.ack_wait_s):
                await self._handler(delivery)
        except Reject as exc:
            log.warning("dropped %s from %s: %s", msg_id, self.subject, exc)
            await self._settle(msg.term())
        except Exception as exc:
            reason = exc or type(exc).__name__
            if delivery.last_attempt:
                log.error(
                    "dropped %s from %s after %d attempts: %s",
                    msg_id,
                    self.subject,
                    attempt,
                    reason,
                )
                await self._settle(msg.term())
            else:
                log.warning("redelivering %s (attempt %d failed: %s)", msg_id, attempt, reason)
                await self._settle(msg.nak(delay=options.delay(attempt)))
        else:
            await self._settle(msg.ack())

    @staticmethod
    async def _settle(ack: Any) -> None:
        # an ack lost with the connection is redelivered later: at-least-once, handlers
        # are idempotent by msg_id
        try:
            await ack
        except (nats.errors.Error, OSError) as exc:
            log.warning("could not acknowledge a message: %s", exc)

    async def unsubscribe(self) -> None:
        if self._task.done():
            return
        await cancel_and_wait(self._task)
        with contextlib.suppress(nats.errors.Error):
            await self._psub.unsubscribe()  # the durable consumer stays on the server


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

    def _check_size(self, subject: str, data: bytes) -> None:
        """Refuse, at once and clearly, a message NATS would refuse (``max_payload``)."""
        limit = self.client.max_payload
        if len(data) > limit:
            raise PayloadTooLargeError(
                f"a {len(data) / 1e6:.1f} MB message for {subject} is over the NATS server's "
                f"max_payload of {limit / 1e6:.1f} MB (its `max_payload` setting): keep values "
                "smaller, or raise the server's limit",
                size=len(data),
                limit=limit,
            )

    async def publish(self, subject: str, data: bytes) -> None:
        validate_subject(subject, wildcards=False)
        self._check_size(subject, data)
        await self.client.publish(subject, data)

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        validate_subject(subject, wildcards=False)
        self._check_size(subject, data)
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

    # --- JetStream ---------------------------------------------------------------------

    async def add_stream(self, stream: Stream) -> None:
        for subject in stream.subjects:
            validate_subject(subject, wildcards=True)
        config = js_api.StreamConfig(
            name=stream.name,
            subjects=list(stream.subjects),
            max_age=stream.max_age_s,
            duplicate_window=stream.duplicate_window_s,
            storage=js_api.StorageType.FILE,
        )
        js = self.client.jetstream()
        try:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:  # exists with another configuration
                await js.update_stream(config)
        except nats.js.errors.ServiceUnavailableError as exc:
            raise ServiceUnavailableError(
                f"NATS at {self.url} has no JetStream (start nats-server with -js): {exc}"
            ) from None
        except nats.errors.TimeoutError:
            raise ServiceTimeoutError(f"NATS did not create stream {stream.name} in time") from None

    async def publish_durable(
        self, subject: str, data: bytes, *, msg_id: str, timeout: float = 5.0
    ) -> bool:
        validate_subject(subject, wildcards=False)
        js = self.client.jetstream()
        try:
            ack = await js.publish(subject, data, timeout=timeout, headers={"Nats-Msg-Id": msg_id})
        except nats.js.errors.NoStreamResponseError:
            raise ServiceUnavailableError(f"no stream keeps messages on {subject!r}") from None
        except nats.errors.NoRespondersError:
            raise ServiceUnavailableError(
                f"no stream keeps messages on {subject!r} (or JetStream is off)"
            ) from None
        except nats.errors.TimeoutError:
            raise ServiceTimeoutError(
                f"NATS did not store {msg_id} on {subject!r} within {timeout:g}s",
                subject=subject,
                timeout=timeout,
            ) from None
        return not ack.duplicate

    async def consume(
        self,
        stream: Stream,
        durable: str,
        handler: DurableHandler,
        options: ConsumerOptions = ConsumerOptions(),
    ) -> Subscription:
        await self.add_stream(stream)
        config = js_api.ConsumerConfig(
            durable_name=durable,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
            max_deliver=options.max_attempts,
            ack_wait=options.ack_wait_s,
        )
        subject = stream.subjects[0] if len(stream.subjects) == 1 else ">"
        psub = await self.client.jetstream().pull_subscribe(
            subject, durable=durable, stream=stream.name, config=config
        )
        return _JetStreamConsumption(psub, stream, durable, handler, options)

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Subscription:
        validate_subject(subject, wildcards=True)

        async def respond(msg: Msg, data: bytes) -> None:
            self._check_size(msg.reply, data)
            await msg.respond(data)

        async def callback(msg: Msg) -> None:
            responder = functools.partial(respond, msg) if msg.reply else None
            try:
                await handler(Delivery(msg.subject, msg.data, msg.reply, responder))
            except Exception:  # a faulty handler must not kill the subscription
                log.exception("handler for %s failed", subject)

        sub = await self.client.subscribe(subject, queue=queue, cb=callback)
        return _NatsSubscription(sub, subject, queue)
