"""The bus interface: request/reply with queue groups, and publish/subscribe.

The bus moves bytes; typing happens one layer up (:mod:`roost.services`). Subjects follow
NATS rules (dot-separated tokens, ``*`` matches one token, ``>`` the rest), and the memory
backend implements the same rules so that code behaves the same on both.
"""

from __future__ import annotations

import abc
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
