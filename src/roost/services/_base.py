"""Service workers and the client that calls them.

A service is a :class:`ServiceWorker` subclass whose ``op_<name>`` coroutine methods serve the
operations of one service name. It subscribes to ``roost.v1.svc.<service>`` in a queue group,
so N workers (in one process or many) share the load. Garbage on the subject is rejected and
logged; the worker keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from roost.auth import GrantError, GrantVerifier
from roost.bus import Bus, Delivery, Subscription
from roost.protocol import (
    ErrorCode,
    ErrorInfo,
    InvalidRequestError,
    PayloadTooLargeError,
    ProtocolError,
    RequestMessage,
    ResponseMessage,
    RoostError,
    ServiceName,
    decode,
    encode,
    subjects,
)

log = logging.getLogger("roost.services")

OpHandler = Callable[[RequestMessage], Awaitable[dict[str, Any]]]


class ServiceWorker:
    """Base class of every platform service worker.

    Subclasses set ``service`` and define ``async def op_<name>(self, request) -> dict``
    returning the response body. Raise a :class:`~roost.protocol.RoostError` for an expected
    failure; anything else is reported to the caller as an internal error and logged.
    """

    service: ClassVar[ServiceName]

    def __init__(
        self,
        bus: Bus,
        *,
        shard: str | None = None,
        shards: Sequence[str] = (),
        concurrency: int = 64,
    ) -> None:
        self.bus = bus
        self.subject = subjects.service(self.service, shard)
        # also serve these shards (e.g. the engines an inference worker runs): each shard
        # subject is its own queue group, shared with every other worker serving the shard
        self.subjects = [self.subject] + [subjects.service(self.service, s) for s in shards]
        self._limit = asyncio.Semaphore(concurrency)
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._ops: dict[str, OpHandler] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")
        }
        self.served = 0
        self.rejected = 0
        self.grants: GrantVerifier | None = None
        """Set: every request but ``ping`` must carry a run grant that covers it."""

    @property
    def ops(self) -> list[str]:
        return sorted(self._ops)

    async def start(self) -> None:
        """Subscribe to the service subject and its shards (queue group = subject)."""
        if not self._subs:
            for subject in self.subjects:
                sub = await self.bus.subscribe(subject, self._on_delivery, queue=subject)
                self._subs.append(sub)

    async def stop(self) -> None:
        """Stop taking requests and wait for those in flight."""
        while self._subs:
            await self._subs.pop().unsubscribe()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.close()

    async def close(self) -> None:
        """Release resources (engines, connections). Called by ``stop``."""

    async def op_ping(self, request: RequestMessage) -> dict[str, Any]:
        """Health check every service answers: its name and operations."""
        return {"service": self.service, "ops": self.ops, "served": self.served}

    async def _on_delivery(self, delivery: Delivery) -> None:
        try:
            request = decode(delivery.data, RequestMessage)
        except ProtocolError as exc:
            self.rejected += 1
            log.warning("%s rejected a malformed message: %s", self.subject, exc)
            if delivery.reply:
                await delivery.respond(encode(ResponseMessage(ok=False, error=exc.to_info())))
            return
        await self._limit.acquire()
        task = asyncio.get_running_loop().create_task(self._serve(request, delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: RequestMessage, delivery: Delivery) -> None:
        started = time.perf_counter()
        try:
            response = await self.handle(request)
        finally:
            self._limit.release()
        self.served += 1
        if delivery.reply:
            response = _with_duration(response, started)
            try:
                try:
                    await delivery.respond(encode(response))
                except PayloadTooLargeError as exc:  # tell the caller why, not a timeout
                    log.warning(
                        "%s: the answer to %s is too large: %s", self.subject, request.id, exc
                    )
                    await delivery.respond(encode(ResponseMessage(ok=False, error=exc.to_info())))
            except Exception as exc:  # the caller may be gone; nothing to do but log
                log.warning("%s could not answer %s: %s", self.subject, request.id, exc)

    async def handle(self, request: RequestMessage) -> ResponseMessage:
        """Serve one request and build its response (never raises)."""
        handler = self._ops.get(request.op)
        try:
            if handler is None:
                raise InvalidRequestError(
                    f"service {self.service!r} has no operation {request.op!r} "
                    f"(known: {', '.join(self.ops)})",
                    code=ErrorCode.UNKNOWN_OP,
                )
            if self.grants is not None and request.op != "ping":
                self.grants.check(request)
            body = await handler(request)
            return reply_to(request, body=body)
        except GrantError as exc:
            self.rejected += 1
            log.warning("%s refused %s.%s for agent %r: %s", self.subject, request.service,
                        request.op, request.agent, exc.message)  # fmt: skip
            return reply_to(request, error=exc.to_info())
        except RoostError as exc:
            return reply_to(request, error=exc.to_info())
        except Exception as exc:
            log.exception("%s.%s failed", self.service, request.op)
            return reply_to(
                request,
                error=ErrorInfo(code=ErrorCode.INTERNAL, message=f"{type(exc).__name__}: {exc}"),
            )


def reply_to(
    request: RequestMessage, *, body: dict[str, Any] | None = None, error: ErrorInfo | None = None
) -> ResponseMessage:
    """The response to ``request``: same session, branch and trace, correlated by id."""
    return ResponseMessage(
        session=request.session,
        branch=request.branch,
        correlation_id=request.id,
        trace=request.trace,
        ok=error is None,
        body=body or {},
        error=error,
    )


def _with_duration(response: ResponseMessage, started: float) -> ResponseMessage:
    import msgspec

    return msgspec.structs.replace(response, duration_ms=(time.perf_counter() - started) * 1000)


async def call_service(
    bus: Bus, request: RequestMessage, *, shard: str | None = None
) -> ResponseMessage:
    """Send ``request`` to its service and return the response.

    Transport failures raise (:class:`~roost.protocol.NoRespondersError`,
    :class:`~roost.protocol.ServiceTimeoutError`); a service-side failure comes back as a
    response with ``ok=False`` (see :func:`raise_for_error`).
    """
    data = await bus.request(
        subjects.service(request.service, shard), encode(request), request.timeout_s
    )
    return decode(data, ResponseMessage)


def raise_for_error(response: ResponseMessage) -> dict[str, Any]:
    """Return the response body, or raise the error it carries as a typed exception."""
    if response.ok:
        return response.body
    info = response.error or ErrorInfo(
        code=ErrorCode.INTERNAL, message="service failed without detail"
    )
    raise RoostError.from_info(info)
