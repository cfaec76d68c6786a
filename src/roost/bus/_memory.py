"""In-process bus: the embedded default. Same semantics as the NATS backend, no network."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field

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
    subject_matches,
    validate_subject,
)
from roost.protocol import NoRespondersError, ServiceTimeoutError, ServiceUnavailableError

log = logging.getLogger("roost.bus.memory")


class _Expired(Exception):
    """Set on a request's answer future when its timeout passes."""


def _expire(answer: asyncio.Future[bytes]) -> None:
    if not answer.done():
        answer.set_exception(_Expired())


class _MemorySubscription(Subscription):
    def __init__(self, bus: MemoryBus, subject: str, handler: Handler, queue: str) -> None:
        self.bus = bus
        self.subject = subject
        self.queue = queue
        self.handler = handler
        self.inbox: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._pump())
        self.active = True

    async def _pump(self) -> None:
        while True:
            delivery = await self.inbox.get()
            if delivery is None:
                return
            try:
                await self.handler(delivery)
            except Exception:  # a faulty handler must not kill the subscription
                log.exception("handler for %s failed", self.subject)

    async def unsubscribe(self) -> None:
        if not self.active:
            return
        self.active = False
        self.bus._remove(self)
        self.inbox.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@dataclass(slots=True)
class _Stored:
    seq: int
    subject: str
    data: bytes
    msg_id: str
    stored_at: float


@dataclass
class _Consumer:
    """A durable consumer: the messages waiting for it, shared by its members."""

    options: ConsumerOptions
    pending: asyncio.Queue[tuple[_Stored, int]] = field(default_factory=asyncio.Queue)
    members: int = 0


@dataclass
class _MemoryStream:
    config: Stream
    messages: list[_Stored] = field(default_factory=list)
    seen: dict[str, float] = field(default_factory=dict)  # msg_id -> when stored
    consumers: dict[str, _Consumer] = field(default_factory=dict)

    def retained(self) -> list[_Stored]:
        cutoff = time.time() - self.config.max_age_s
        self.messages = [m for m in self.messages if m.stored_at >= cutoff]
        return self.messages


class _MemoryConsumption(Subscription):
    """One member of a durable consumer: takes waiting messages one at a time."""

    def __init__(
        self, stream: _MemoryStream, durable: str, consumer: _Consumer, handler: DurableHandler
    ) -> None:
        self.subject = ",".join(stream.config.subjects)
        self.queue = durable
        self._stream, self._consumer, self._handler = stream, consumer, handler
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        options = self._consumer.options
        while True:
            message, attempt = await self._consumer.pending.get()
            delivery = DurableDelivery(
                message.subject, message.data, message.msg_id, attempt, options.max_attempts
            )
            try:
                async with asyncio.timeout(options.ack_wait_s):
                    await self._handler(delivery)
            except Reject as exc:
                log.warning("dropped %s from %s: %s", message.msg_id, self.subject, exc)
            except Exception as exc:
                if delivery.last_attempt:
                    log.error(
                        "dropped %s from %s after %d attempts: %s",
                        message.msg_id,
                        self.subject,
                        attempt,
                        exc or type(exc).__name__,
                    )
                else:
                    log.warning(
                        "redelivering %s (attempt %d failed: %s)",
                        message.msg_id,
                        attempt,
                        exc or type(exc).__name__,
                    )
                    asyncio.get_running_loop().call_later(
                        options.delay(attempt),
                        self._consumer.pending.put_nowait,
                        (message, attempt + 1),
                    )

    async def unsubscribe(self) -> None:
        if self._task.done():
            return
        await cancel_and_wait(self._task)
        self._consumer.members -= 1


class MemoryBus(Bus):
    """An in-process bus with NATS subject semantics and queue groups."""

    name = "memory"

    def __init__(self) -> None:
        self._subs: list[_MemorySubscription] = []
        self._rr = itertools.count()
        self._connected = False
        # subject -> matching subscriptions, invalidated on (un)subscribe
        self._route_cache: dict[str, list[_MemorySubscription]] = {}
        self._streams: dict[str, _MemoryStream] = {}
        self._seq = itertools.count(1)
        self._consumptions: list[_MemoryConsumption] = []

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False
        for sub in list(self._subs):
            await sub.unsubscribe()
        for consumption in self._consumptions:
            await consumption.unsubscribe()
        self._consumptions.clear()

    # --- durable delivery (the streams live as long as this bus object) ------------------

    async def add_stream(self, stream: Stream) -> None:
        self._check()
        for subject in stream.subjects:
            validate_subject(subject, wildcards=True)
        existing = self._streams.get(stream.name)
        if existing is None:
            self._streams[stream.name] = _MemoryStream(stream)
        else:
            existing.config = stream

    def _stream_for(self, subject: str) -> _MemoryStream | None:
        for stream in self._streams.values():
            if any(subject_matches(p, subject) for p in stream.config.subjects):
                return stream
        return None

    async def publish_durable(
        self, subject: str, data: bytes, *, msg_id: str, timeout: float = 5.0
    ) -> bool:
        self._check()
        validate_subject(subject, wildcards=False)
        stream = self._stream_for(subject)
        if stream is None:
            raise ServiceUnavailableError(f"no stream keeps messages on {subject!r}")
        now = time.time()
        window = stream.config.duplicate_window_s
        stream.seen = {k: t for k, t in stream.seen.items() if now - t < window}
        if msg_id in stream.seen:
            return False
        stream.seen[msg_id] = now
        message = _Stored(next(self._seq), subject, data, msg_id, now)
        stream.retained().append(message)
        for consumer in stream.consumers.values():
            consumer.pending.put_nowait((message, 1))
        for sub in self._targets(subject):  # live subscribers see it as a plain publish
            sub.inbox.put_nowait(Delivery(subject, data))
        return True

    async def consume(
        self,
        stream: Stream,
        durable: str,
        handler: DurableHandler,
        options: ConsumerOptions = ConsumerOptions(),
    ) -> Subscription:
        self._check()
        await self.add_stream(stream)
        kept = self._streams[stream.name]
        consumer = kept.consumers.get(durable)
        if consumer is None:  # a new durable consumer starts at the oldest kept message
            consumer = kept.consumers[durable] = _Consumer(options)
            for message in kept.retained():
                consumer.pending.put_nowait((message, 1))
        consumer.members += 1
        consumption = _MemoryConsumption(kept, durable, consumer, handler)
        self._consumptions.append(consumption)
        return consumption

    async def flush(self, timeout: float = 5.0) -> None:
        return None

    def _remove(self, sub: _MemorySubscription) -> None:
        self._subs.remove(sub)
        self._route_cache.clear()

    def _targets(self, subject: str) -> list[_MemorySubscription]:
        matching = self._route_cache.get(subject)
        if matching is None:
            matching = [s for s in self._subs if subject_matches(s.subject, subject)]
            self._route_cache[subject] = matching
        if not matching:
            return matching
        plain = [s for s in matching if not s.queue]
        groups: dict[str, list[_MemorySubscription]] = {}
        for s in matching:
            if s.queue:
                groups.setdefault(s.queue, []).append(s)
        n = next(self._rr)
        return plain + [members[n % len(members)] for members in groups.values()]

    def _check(self) -> None:
        if not self._connected:
            from roost.protocol import ServiceUnavailableError

            raise ServiceUnavailableError("memory bus is closed")

    async def publish(self, subject: str, data: bytes) -> None:
        self._check()
        validate_subject(subject, wildcards=False)
        for sub in self._targets(subject):
            sub.inbox.put_nowait(Delivery(subject, data))

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        self._check()
        validate_subject(subject, wildcards=False)
        targets = self._targets(subject)
        if not targets:
            raise NoRespondersError(f"no service is serving {subject!r}", subject=subject)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()

        async def responder(reply: bytes) -> None:
            if not answer.done():
                answer.set_result(reply)

        for sub in targets:
            sub.inbox.put_nowait(Delivery(subject, data, "_INBOX.memory", responder))
        # A timer on the future itself: cheaper than asyncio.wait_for on this hot path.
        timer = loop.call_later(timeout, _expire, answer)
        try:
            return await answer
        except _Expired:
            raise ServiceTimeoutError(
                f"no answer on {subject!r} within {timeout:g}s", subject=subject, timeout=timeout
            ) from None
        finally:
            timer.cancel()

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Subscription:
        self._check()
        validate_subject(subject, wildcards=True)
        sub = _MemorySubscription(self, subject, handler, queue)
        self._subs.append(sub)
        self._route_cache.clear()
        return sub
