"""The kv and vec services over a real in-process bus and real stores (SQLite and Postgres)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from roost.bus import MemoryBus
from roost.protocol import (
    InvalidRequestError,
    KvDelete,
    KvGet,
    KvList,
    KvPut,
    KvValue,
    RequestMessage,
    ResponseMessage,
    VecDelete,
    VecResult,
    VecSearch,
    VectorItem,
    VecUpsert,
    from_body,
    to_body,
)
from roost.services import call_service, raise_for_error
from roost.services.kv import KvService
from roost.services.vectors import VectorService
from roost.stores import Stores, open_stores, session_ref


@pytest.fixture
async def env(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[MemoryBus, Stores]]:
    stores = await open_stores(database_url, tmp_path)
    bus = MemoryBus()
    await bus.connect()
    workers = [KvService(bus, stores.kv), VectorService(bus, stores.vectors)]
    for worker in workers:
        await worker.start()
    try:
        yield bus, stores
    finally:
        for worker in workers:
            await worker.stop()
        await bus.close()
        await stores.close()


async def call(
    bus: MemoryBus,
    service: str,
    op: str,
    body: Any,
    *,
    agent: str = "echo",
    session: str = "s1",
    branch: str = "main",
) -> ResponseMessage:
    request = RequestMessage(
        service=service,  # type: ignore[arg-type]
        op=op,
        body=body if isinstance(body, dict) else to_body(body),
        agent=agent,
        session=session,
        branch=branch,
        timeout_s=5.0,
    )
    response = await call_service(bus, request)
    assert response.correlation_id == request.id
    return response


async def kv(bus: MemoryBus, op: str, body: Any, **kw: Any) -> KvValue:
    return from_body(raise_for_error(await call(bus, "kv", op, body, **kw)), KvValue)


async def test_kv_service_round_trip(env: tuple[MemoryBus, Stores]) -> None:
    bus, stores = env
    value = b"\x00binary\xffvalue"
    assert not (await kv(bus, "get", KvGet(key="k"))).found
    put = await kv(bus, "put", KvPut(key="k", value=value))
    assert len(put.commit) == 64
    got = await kv(bus, "get", KvGet(key="k"))
    assert got.found and got.value == value
    await kv(bus, "put", KvPut(key="j", value=b"1"))
    assert (await kv(bus, "list", KvList())).keys == ["j", "k"]
    assert (await kv(bus, "list", KvList(prefix="k"))).keys == ["k"]
    deleted = await kv(bus, "delete", KvDelete(key="k"))
    assert deleted.commit and deleted.commit != put.commit
    assert not (await kv(bus, "get", KvGet(key="k"))).found
    # the service wrote the session-scope ref of this agent, session and branch
    assert await stores.kv.get_at(put.commit, "k") == value
    assert (await stores.kv.head(session_ref("echo", "s1", "main"))).id == deleted.commit  # type: ignore[union-attr]


async def test_kv_scopes_isolate_sessions_branches_and_agents(
    env: tuple[MemoryBus, Stores],
) -> None:
    bus, _ = env
    await kv(bus, "put", KvPut(key="k", value=b"main"))
    await kv(bus, "put", KvPut(key="k", value=b"shared", scope="agent"))
    assert not (await kv(bus, "get", KvGet(key="k"), branch="fork-1")).found
    assert not (await kv(bus, "get", KvGet(key="k"), session="s2")).found
    assert not (await kv(bus, "get", KvGet(key="k"), agent="other")).found
    shared = await kv(bus, "get", KvGet(key="k", scope="agent"), session="s2")
    assert shared.value == b"shared"


async def test_kv_service_errors(env: tuple[MemoryBus, Stores]) -> None:
    bus, _ = env
    response = await call(bus, "kv", "put", {"key": "k"})  # no value
    assert not response.ok and response.error is not None
    assert response.error.code == "invalid_request" and "KvPut" in response.error.message
    response = await call(bus, "kv", "put", {"key": "k", "value": "%%% not base64"})
    assert not response.ok and "base64" in response.error.message  # type: ignore[union-attr]
    response = await call(bus, "kv", "get", to_body(KvGet(key="k")), agent="")
    assert not response.ok and "calling agent" in response.error.message  # type: ignore[union-attr]
    response = await call(bus, "kv", "get", to_body(KvGet(key="k")), session="")
    assert not response.ok and "session" in response.error.message  # type: ignore[union-attr]
    # the agent scope needs no session
    ok = await call(bus, "kv", "get", to_body(KvGet(key="k", scope="agent")), session="")
    assert ok.ok
    response = await call(bus, "kv", "get", {"key": ""})
    with pytest.raises(InvalidRequestError, match="non-empty"):
        raise_for_error(response)
    response = await call(bus, "kv", "frobnicate", {})
    assert response.error is not None and response.error.code == "unknown_op"


async def vec(bus: MemoryBus, op: str, body: Any, **kw: Any) -> VecResult:
    return from_body(raise_for_error(await call(bus, "vec", op, body, **kw)), VecResult)


async def test_vector_service_round_trip(env: tuple[MemoryBus, Stores]) -> None:
    bus, stores = env
    items = [
        VectorItem(id="a", vector=[1, 0], metadata={"lang": "en"}, text="alpha"),
        VectorItem(id="b", vector=[0, 1], metadata={"lang": "fr"}, text="beta"),
    ]
    assert (await vec(bus, "upsert", VecUpsert(collection="docs", items=items))).count == 2
    found = await vec(bus, "search", VecSearch(collection="docs", vector=[1, 0.2], k=2))
    assert [h.id for h in found.hits] == ["a", "b"] and found.count == 2
    assert found.hits[0].text == "alpha" and found.hits[0].metadata == {"lang": "en"}
    only_fr = await vec(
        bus, "search", VecSearch(collection="docs", vector=[1, 0.2], where={"lang": "fr"})
    )
    assert [h.id for h in only_fr.hits] == ["b"]
    # the namespace is the calling agent
    other = await vec(bus, "search", VecSearch(collection="docs", vector=[1, 0]), agent="other")
    assert other.hits == []
    assert await stores.vectors.count("echo", "docs") == 2
    assert (await vec(bus, "delete", VecDelete(collection="docs", ids=["a", "zz"]))).count == 1
    left = await vec(bus, "search", VecSearch(collection="docs", vector=[1, 0]))
    assert [h.id for h in left.hits] == ["b"]


async def test_vector_service_errors(env: tuple[MemoryBus, Stores]) -> None:
    bus, _ = env
    response = await call(bus, "vec", "upsert", {"collection": "docs", "items": [{"id": "a"}]})
    assert not response.ok and response.error is not None
    assert response.error.code == "invalid_request" and "VecUpsert" in response.error.message
    await vec(bus, "upsert", VecUpsert(collection="d", items=[VectorItem(id="a", vector=[1, 0])]))
    response = await call(
        bus, "vec", "search", to_body(VecSearch(collection="d", vector=[1, 0, 0]))
    )
    with pytest.raises(InvalidRequestError, match="dimension 2.*dimension 3"):
        raise_for_error(response)
    response = await call(
        bus, "vec", "search", to_body(VecSearch(collection="d", vector=[1])), agent=""
    )
    assert not response.ok and "calling agent" in response.error.message  # type: ignore[union-attr]
