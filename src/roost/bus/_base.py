"""The bus interface: request/reply with queue groups, publish/subscribe, and durable
delivery through streams.

The bus moves bytes; typing happens one layer up (:mod:`roost.services`). Subjects follow
NATS rules (dot-separated tokens, ``*`` matches one token, ``>`` the rest), and the memory
backend implements the same rules so that code behaves the same on both.

Durable delivery (JetStream on NATS): a :class:`Stream` keeps every message published on its
subjects; :meth:`Bus.publish_durable` returns once the stream holds the message (a repeated
``msg_id`` within the stream's duplicate window is stored once); :meth:`Bus.consume` hands
each stored message to one member of a named durable consumer and acknowledges it only
after the handler returns (*ack after work*). A handler that raises gets the message again
after a delay, at most ``max_attempts`` times in all (*bounded redelivery*); one that raises
:class:`Reject` drops it at once (a message that can never be processed).
"""

from __future__ import annotations

import abc
import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Delivery:
    """A message handed to a subscriber. ``respond`` answers a request (no-op for events)."""

    subject: str
    data: bytes
    reply: str = ""
    _responder: Callable[[bytes], Awaitable[None]] | None = field(default=None, repr=False)

    async def respond(self, data: bytes) -> None:
        if self._responder is not None:
            await self._responder(data)


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Stream:
    """A durable log of every message published on ``subjects``."""

    name: str
    subjects: tuple[str, ...]
    max_age_s: float = 24 * 3600.0
    """How long a message is kept (consumed or not)."""
    duplicate_window_s: float = 120.0
    """A ``msg_id`` published again within this window is stored once."""


@dataclass(frozen=True, slots=True)
class DurableDelivery:
    """A stored message handed to a durable consumer; ``attempt`` counts from 1."""

    subject: str
    data: bytes
    msg_id: str
    attempt: int
    max_attempts: int

    @property
    def last_attempt(self) -> bool:
        """Whether a failure now drops the message for good."""
        return self.attempt >= self.max_attempts


DurableHandler = Callable[[DurableDelivery], Awaitable[None]]


class Reject(Exception):
    """Raised by a durable handler for a message that can never be processed (malformed):
    it is dropped at once instead of being redelivered."""


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """How a durable consumer retries: ``max_attempts`` deliveries in all, the n-th retry
    after ``retry_delays_s[n]`` (the last delay repeats); a handler running longer than
    ``ack_wait_s`` counts as failed (its worker may be dead) and the message goes out again."""

    max_attempts: int = 5
    ack_wait_s: float = 30.0
    retry_delays_s: tuple[float, ...] = (0.5, 2.0, 5.0, 10.0)

    def delay(self, attempt: int) -> float:
        """The delay before delivery ``attempt + 1`` after delivery ``attempt`` failed."""
        return self.retry_delays_s[min(attempt, len(self.retry_delays_s)) - 1]


class Subscription(abc.ABC):
    """A live subscription; ``unsubscribe`` stops delivery."""

    subject: str
    queue: str

    @abc.abstractmethod
    async def unsubscribe(self) -> None: ...


class Bus(abc.ABC):
    """A message bus. Use as an async context manager, or call ``connect`` / ``close``.

    ``request`` raises :class:`~roost.protocol.NoRespondersError` at once when nothing serves
    the subject and :class:`~roost.protocol.ServiceTimeoutError` when a responder exists but no
    answer arrives within ``timeout`` seconds; the two are never confused.
    """

    name: str = "bus"

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def publish(self, subject: str, data: bytes) -> None:
        """Fire-and-forget delivery to every subscriber (one per queue group)."""

    @abc.abstractmethod
    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        """Send ``data`` to one responder on ``subject`` and wait for its answer."""

    @abc.abstractmethod
    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Subscription:
        """Call ``handler`` for each message on ``subject``.

        Subscriptions sharing a ``queue`` name split the messages between them (each message
        goes to one member). Handlers of one subscription run one at a time, in order; a
        handler that wants concurrency starts its own tasks.
        """

    @abc.abstractmethod
    async def add_stream(self, stream: Stream) -> None:
        """Create ``stream`` (or update it to this configuration). Idempotent."""

    @abc.abstractmethod
    async def publish_durable(
        self, subject: str, data: bytes, *, msg_id: str, timeout: float = 5.0
    ) -> bool:
        """Publish ``data`` and return once a stream holds it: ``False`` if the stream
        already had ``msg_id`` (a duplicate, stored once). Live subscribers of ``subject``
        get it too. No stream on the subject: :class:`~roost.protocol.ServiceUnavailableError`."""

    @abc.abstractmethod
    async def consume(
        self,
        stream: Stream,
        durable: str,
        handler: DurableHandler,
        options: ConsumerOptions = ConsumerOptions(),
    ) -> Subscription:
        """Deliver ``stream``'s messages to ``handler``, acknowledging each after it returns.

        Consumers with the same ``durable`` name (in any process) share the messages, each
        message going to one of them; a durable consumer resumes where it left off, and a
        new one starts at the oldest message the stream keeps. Messages of one consumer
        are handled one at a time.
        """

    @abc.abstractmethod
    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything published so far has reached the server (no-op in memory)."""

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    async def __aenter__(self) -> Bus:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end, cancelling again if an await that was
    finishing at that moment swallowed the cancellation (a known asyncio race)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` matches one token, a final ``>`` one or more."""
    if pattern == subject:
        return True
    p_tokens = pattern.split(".")
    s_tokens = subject.split(".")
    for i, token in enumerate(p_tokens):
        if token == ">":
            return i == len(p_tokens) - 1 and len(s_tokens) > i
        if i >= len(s_tokens):
            return False
        if token != "*" and token != s_tokens[i]:
            return False
    return len(p_tokens) == len(s_tokens)


def validate_subject(subject: str, *, wildcards: bool) -> None:
    """Reject empty tokens, whitespace, and wildcards where they are not allowed."""
    problem = _subject_problem(subject, wildcards)
    if problem is not None:
        from roost.protocol import InvalidRequestError

        raise InvalidRequestError(problem)


@functools.lru_cache(maxsize=4096)  # subjects repeat: validate each once, not per message
def _subject_problem(subject: str, wildcards: bool) -> str | None:
    tokens = subject.split(".")
    if not subject or any(not t or any(c.isspace() for c in t) for t in tokens):
        return f"invalid subject {subject!r}"
    if not wildcards and any(t in ("*", ">") for t in tokens):
        return f"wildcards are not allowed when publishing: {subject!r}"
    return None
