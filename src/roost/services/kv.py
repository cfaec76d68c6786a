"""The KV service: versioned key-value storage for agents, over a :class:`KvStore`.

Scope ``session`` (the default) is private to the calling agent's session *and branch*
(ref ``session/<session>/<branch>/<agent>``), so it forks with the session; scope
``agent`` (ref ``agent/<agent>``) is shared by every session of the agent. ``put`` and
``delete`` answer with the new commit, which the recorded response keeps: a fork uses it to
give the new branch the KV state of its fork point.
"""

from __future__ import annotations

from typing import Any

from roost.bus import Bus
from roost.protocol import (
    InvalidRequestError,
    KvDelete,
    KvGet,
    KvList,
    KvPut,
    KvScope,
    KvValue,
    RequestMessage,
    from_body,
    to_body,
)
from roost.services._base import ServiceWorker
from roost.stores import KvStore, agent_ref, session_ref


def kv_ref(request: RequestMessage, scope: KvScope) -> str:
    """The KV ref a request of ``scope`` reads and writes."""
    if not request.agent:
        raise InvalidRequestError("kv requests must name the calling agent")
    if scope == "agent":
        return agent_ref(request.agent)
    if scope == "session":
        if not request.session or not request.branch:
            raise InvalidRequestError(
                "session-scope kv requests need the session and branch they run in "
                "(use scope 'agent' for data shared across sessions)"
            )
        return session_ref(request.agent, request.session, request.branch)
    raise InvalidRequestError(f"unknown kv scope {scope!r} (expected 'session' or 'agent')")


class KvService(ServiceWorker):
    """Service ``kv``: ``get``, ``put``, ``list`` and ``delete`` (bodies: :class:`KvGet`,
    :class:`KvPut`, :class:`KvList`, :class:`KvDelete`; answers: :class:`KvValue`)."""

    service = "kv"

    def __init__(self, bus: Bus, store: KvStore, **kw: Any) -> None:
        super().__init__(bus, **kw)
        self.store = store

    async def op_get(self, request: RequestMessage) -> dict[str, Any]:
        """The value of a key (``found`` false when absent)."""
        get = from_body(request.body, KvGet)
        value = await self.store.get(kv_ref(request, get.scope), get.key)
        return to_body(KvValue(found=value is not None, value=value))

    async def op_put(self, request: RequestMessage) -> dict[str, Any]:
        """Set a key; answers the new commit."""
        put = from_body(request.body, KvPut)
        commit = await self.store.put(kv_ref(request, put.scope), put.key, put.value)
        return to_body(KvValue(commit=commit))

    async def op_delete(self, request: RequestMessage) -> dict[str, Any]:
        """Delete a key in a new commit; answers the resulting head commit (unchanged, or
        empty for a ref without commits, when the key did not exist)."""
        req = from_body(request.body, KvDelete)
        commit = await self.store.delete(kv_ref(request, req.scope), req.key)
        return to_body(KvValue(commit=commit or ""))

    async def op_list(self, request: RequestMessage) -> dict[str, Any]:
        """The keys starting with ``prefix``, sorted."""
        req = from_body(request.body, KvList)
        keys = await self.store.list(kv_ref(request, req.scope), req.prefix)
        return to_body(KvValue(keys=keys))
