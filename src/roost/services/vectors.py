"""The vector service: per-agent vector collections, over a :class:`VectorStore`.

The namespace of every collection is the calling agent, so agents never see each other's
collections. A collection is created by its first ``upsert``, which fixes its dimension.
"""

from __future__ import annotations

from typing import Any

from roost.bus import Bus
from roost.protocol import (
    InvalidRequestError,
    RequestMessage,
    VecDelete,
    VecResult,
    VecSearch,
    VecUpsert,
    from_body,
    to_body,
)
from roost.services._base import ServiceWorker
from roost.stores import VectorStore


def _namespace(request: RequestMessage) -> str:
    if not request.agent:
        raise InvalidRequestError("vec requests must name the calling agent")
    return request.agent


class VectorService(ServiceWorker):
    """Service ``vec``: ``upsert``, ``search`` and ``delete`` (bodies: :class:`VecUpsert`,
    :class:`VecSearch`, :class:`VecDelete`; answers: :class:`VecResult`)."""

    service = "vec"

    def __init__(self, bus: Bus, store: VectorStore, **kw: Any) -> None:
        super().__init__(bus, **kw)
        self.store = store

    async def op_upsert(self, request: RequestMessage) -> dict[str, Any]:
        """Insert or replace items by id; ``count`` is how many were written."""
        req = from_body(request.body, VecUpsert)
        count = await self.store.upsert(_namespace(request), req.collection, req.items)
        return to_body(VecResult(count=count))

    async def op_search(self, request: RequestMessage) -> dict[str, Any]:
        """The ``k`` nearest items matching ``where``, nearest first (``count`` = hits)."""
        req = from_body(request.body, VecSearch)
        hits = await self.store.search(
            _namespace(request), req.collection, req.vector, k=req.k, where=req.where
        )
        return to_body(VecResult(hits=hits, count=len(hits)))

    async def op_delete(self, request: RequestMessage) -> dict[str, Any]:
        """Delete items by id; ``count`` is how many existed."""
        req = from_body(request.body, VecDelete)
        count = await self.store.delete(_namespace(request), req.collection, req.ids)
        return to_body(VecResult(count=count))
