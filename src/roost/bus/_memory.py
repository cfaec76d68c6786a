"""In-process bus: the embedded default. Same semantics as the NATS backend, no network."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

from roost.bus._base import Bus, Delivery, Handler, Subscription, subject_matches, validate_subject
from roost.protocol import NoRespondersError, ServiceTimeoutError

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


class MemoryBus(Bus):
    """An in-process bus with NATS subject semantics and queue groups."""

    name = "memory"

    def __init__(self) -> None:
        self._subs: list[_MemorySubscription] = []
        self._rr = itertools.count()
        self._connected = False
        # subject -> matching subscriptions, invalidated on (un)subscribe
        self._route_cache: dict[str, list[_MemorySubscription]] = {}

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False
        for sub in list(self._subs):
            await sub.unsubscribe()

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
