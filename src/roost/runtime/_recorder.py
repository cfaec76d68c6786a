"""Where a run's messages are recorded: the :class:`Recorder` interface.

Its own module, so that the dispatcher (which records calls) and the event log (which
records events) both depend on it instead of on each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from roost.protocol import Message
    from roost.stores import Node


class Recorder(Protocol):
    """Appends protocol messages to the session DAG, returning the message's node
    (``None``: not recorded)."""

    async def record(self, message: Message, **annotations: Any) -> Node | None: ...


class NullRecorder:
    """Records nothing (for agent unit tests that do not care about sessions)."""

    async def record(self, message: Message, **annotations: Any) -> Node | None:
        return None
