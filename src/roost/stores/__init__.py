"""Stores: the registry, session state, versioned KV, vectors and secrets.

Each store is an interface (a :class:`typing.Protocol` in :mod:`roost.stores._interfaces`)
with an implementation on SQLAlchemy 2 over one shared database: SQLite locally (through
``pysqlite3`` so sqlite-vec can load) or Postgres (through ``psycopg`` 3, with pgvector for the
vectors). The schema is created and upgraded
by Alembic migrations when the stores are opened, so a fresh ``ROOST_HOME`` just works::

    stores = await open_stores(settings)          # or open_stores(url, home)
    session = await stores.state.create_session("echo")
    commit = await stores.kv.put(session_ref("echo", session.id, "main"), "k", b"v")
    await stores.close()

All store methods are coroutines; the blocking database work runs in the database's own
thread pool (see :class:`Database`).

Names load on first use (PEP 562): the records (``ModelRecord``, ``Node``, ...) and the
interfaces come without SQLAlchemy, which loads with the first SQL store or
:func:`open_stores`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roost._lazy import lazy_exports

if TYPE_CHECKING:
    from roost.protocol import EngineName
    from roost.stores._db import Database, LruCache, alembic_config, canonical_json, sha256_hex
    from roost.stores._interfaces import (
        KvStore,
        RegistryStore,
        SecretStore,
        StateStore,
        VectorStore,
    )
    from roost.stores._kv import (
        SqlKvStore,
        agent_ref,
        commit_id,
        session_branch_prefix,
        session_ref,
    )
    from roost.stores._open import Stores, open_stores, open_stores_sync, vector_store_for
    from roost.stores._pgvector import PgVectorStore
    from roost.stores._principals import (
        MAX_TOKEN_TTL_S,
        AccessToken,
        AuditEvent,
        SqlPrincipalStore,
        User,
    )
    from roost.stores._records import (
        NODE_KINDS,
        AgentRecord,
        AvailableModel,
        Branch,
        Capability,
        CollectionInfo,
        Commit,
        ModelKind,
        ModelRecord,
        Node,
        NodeKind,
        Session,
        WorkerRecord,
    )
    from roost.stores._registry import SqlRegistryStore
    from roost.stores._secrets import KEY_ENV, SecretKeyError, SecretKeyring, SqlSecretStore
    from roost.stores._state import MAIN_BRANCH, SqlStateStore, generate_session_name, node_id
    from roost.stores._vectors import SqliteVecStore

_MODULES: dict[str, str] = {
    "KEY_ENV": "roost.stores._secrets",
    "MAX_TOKEN_TTL_S": "roost.stores._principals",
    "AccessToken": "roost.stores._principals",
    "AuditEvent": "roost.stores._principals",
    "SqlPrincipalStore": "roost.stores._principals",
    "User": "roost.stores._principals",
    "MAIN_BRANCH": "roost.stores._state",
    "NODE_KINDS": "roost.stores._records",
    "AgentRecord": "roost.stores._records",
    "AvailableModel": "roost.stores._records",
    "Branch": "roost.stores._records",
    "Capability": "roost.stores._records",
    "CollectionInfo": "roost.stores._records",
    "Commit": "roost.stores._records",
    "Database": "roost.stores._db",
    "EngineName": "roost.protocol",
    "KvStore": "roost.stores._interfaces",
    "LruCache": "roost.stores._db",
    "ModelKind": "roost.stores._records",
    "ModelRecord": "roost.stores._records",
    "Node": "roost.stores._records",
    "NodeKind": "roost.stores._records",
    "PgVectorStore": "roost.stores._pgvector",
    "RegistryStore": "roost.stores._interfaces",
    "SecretKeyError": "roost.stores._secrets",
    "SecretKeyring": "roost.stores._secrets",
    "SecretStore": "roost.stores._interfaces",
    "Session": "roost.stores._records",
    "SqlKvStore": "roost.stores._kv",
    "SqlRegistryStore": "roost.stores._registry",
    "SqlSecretStore": "roost.stores._secrets",
    "SqlStateStore": "roost.stores._state",
    "SqliteVecStore": "roost.stores._vectors",
    "StateStore": "roost.stores._interfaces",
    "Stores": "roost.stores._open",
    "VectorStore": "roost.stores._interfaces",
    "WorkerRecord": "roost.stores._records",
    "agent_ref": "roost.stores._kv",
    "alembic_config": "roost.stores._db",
    "canonical_json": "roost.stores._db",
    "commit_id": "roost.stores._kv",
    "generate_session_name": "roost.stores._state",
    "node_id": "roost.stores._state",
    "open_stores": "roost.stores._open",
    "open_stores_sync": "roost.stores._open",
    "session_branch_prefix": "roost.stores._kv",
    "session_ref": "roost.stores._kv",
    "sha256_hex": "roost.stores._db",
    "vector_store_for": "roost.stores._open",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULES)


__all__ = [
    "KEY_ENV",
    "MAIN_BRANCH",
    "MAX_TOKEN_TTL_S",
    "NODE_KINDS",
    "AccessToken",
    "AgentRecord",
    "AuditEvent",
    "AvailableModel",
    "Branch",
    "Capability",
    "CollectionInfo",
    "Commit",
    "Database",
    "EngineName",
    "KvStore",
    "LruCache",
    "ModelKind",
    "ModelRecord",
    "Node",
    "NodeKind",
    "PgVectorStore",
    "RegistryStore",
    "SecretKeyError",
    "SecretKeyring",
    "SecretStore",
    "Session",
    "SqlKvStore",
    "SqlPrincipalStore",
    "SqlRegistryStore",
    "SqlSecretStore",
    "SqlStateStore",
    "SqliteVecStore",
    "StateStore",
    "Stores",
    "User",
    "VectorStore",
    "WorkerRecord",
    "agent_ref",
    "alembic_config",
    "canonical_json",
    "commit_id",
    "generate_session_name",
    "node_id",
    "open_stores",
    "open_stores_sync",
    "session_branch_prefix",
    "session_ref",
    "sha256_hex",
    "vector_store_for",
]
