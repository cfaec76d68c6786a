"""A run's events as a resumable stream: replayed from the session DAG, then live.

Every durable event (progress, steps, questions, answers) and the run's completion carry
their message id as the stream's event id. A client that reconnects, to this replica or
another, sends the last id it saw as ``Last-Event-ID``; the stream replays what the DAG
recorded after it, then follows the live events, skipping any it already sent. Nothing is
kept in this process between requests: the DAG is the durable copy.

Token events are live only (the reply they make up is recorded with the completion), so
they carry no id and are not replayed.

The live subscription starts just before the replay reads the DAG, so an event emitted in
that instant would be missed by both; the stream reads the DAG once more at its first live
event and at the end, sending anything still missing in order before going on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from roost.platform import PlatformAPI
from roost.protocol import CompleteMessage, EventMessage, encode
from roost.runtime import RunInfo
from roost.server._follow import LiveRun
from roost.stores import Node

_DURABLE_KINDS = ("event", "complete")


class RunEventStream:
    """The server-sent events of run ``info`` after ``last_event_id`` (all when ``None``)."""

    def __init__(self, platform: PlatformAPI, info: RunInfo, last_event_id: str | None) -> None:
        self.platform = platform
        self.info = info
        self.cursor = last_event_id
        self._sent: set[str] = set()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """``{"id", "event", "data"}`` items for sse-starlette, ending with ``complete``."""
        if self.info.status != "running":
            for node in await self._recorded():
                yield self._item(node)
            return
        complete: CompleteMessage | None = None
        async with LiveRun(self.platform, self.info.id, self.info.session) as live:
            for node in await self._recorded():
                yield self._item(node)
            reconciled = False
            async for item in live:
                if isinstance(item, CompleteMessage):
                    complete = item
                    break
                if item is None or not self._mine(item):
                    continue
                if item.type == "token":
                    yield {"event": "token", "data": encode(item).decode()}
                    continue
                if not reconciled:
                    reconciled = True
                    # what was recorded before this event and is not sent yet (it came before
                    # the subscription); what follows it comes live, like this one
                    recorded = await self._recorded()
                    ids = [n.content.get("id") for n in recorded]
                    if item.id in ids:
                        recorded = recorded[: ids.index(item.id)]
                    for node in recorded:
                        yield self._item(node)
                if item.id not in self._sent:
                    self._sent.add(item.id)
                    yield {"id": item.id, "event": item.type, "data": encode(item).decode()}
        assert complete is not None  # LiveRun ends with the completion or raises
        for node in await self._recorded():
            if node.kind == "event":
                yield self._item(node)
        if complete.id not in self._sent:
            self._sent.add(complete.id)
            yield {"id": complete.id, "event": "complete", "data": encode(complete).decode()}

    def _mine(self, event: EventMessage) -> bool:
        # tokens carry the model call's id, not the run's: they belong to the session's run
        return event.correlation_id == self.info.id or event.type == "token"

    async def _recorded(self) -> list[Node]:
        """This run's durable events and completion recorded after the cursor, not yet sent."""
        nodes = await self.platform.session_nodes(self.info.session, self.info.branch)
        mine = [
            n
            for n in nodes
            if n.kind in _DURABLE_KINDS and n.content.get("correlation_id") == self.info.id
        ]
        if self.cursor is not None:
            ids = [n.content.get("id") for n in mine]
            if self.cursor in ids:
                mine = mine[ids.index(self.cursor) + 1 :]
        return [n for n in mine if n.content.get("id") not in self._sent]

    def _item(self, node: Node) -> dict[str, Any]:
        content = node.content
        message_id = str(content.get("id", ""))
        self._sent.add(message_id)
        kind = "complete" if node.kind == "complete" else str(content.get("type", "event"))
        data = {"kind": node.kind, **content}
        return {"id": message_id, "event": kind, "data": msgspec.json.encode(data).decode()}


__all__ = ["RunEventStream"]
