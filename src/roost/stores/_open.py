"""Opening the stores: every store over one database (:func:`open_stores`), and the
:class:`Stores` bundle a process holds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from roost.protocol import ServiceUnavailableError
from roost.stores._db import Database
from roost.stores._interfaces import (
    KvStore,
    RegistryStore,
    SecretStore,
    StateStore,
    VectorStore,
)
from roost.stores._kv import SqlKvStore
from roost.stores._pgvector import PgVectorStore
from roost.stores._registry import SqlRegistryStore
from roost.stores._secrets import SecretKeyring, SqlSecretStore
from roost.stores._state import SqlStateStore
from roost.stores._vectors import SqliteVecStore

if TYPE_CHECKING:
    from roost.config import Settings


@dataclass(kw_only=True)
class Stores:
    """The stores one process uses. Close with :meth:`close` (or ``async with``).

    :func:`open_stores` gives every store over one database. A worker without database
    access (an agent or inference worker in distributed mode) gets registry, state and
    secrets as clients of the coordination services instead, and no ``kv`` / ``vectors``:
    its agents reach those through the bus services (see :meth:`require_kv`).
    """

    registry: RegistryStore
    state: StateStore
    secrets: SecretStore
    kv: KvStore | None = None
    vectors: VectorStore | None = None
    db: Database | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Called on :meth:`close`, last first (remote clients' channels)."""

    def require_kv(self) -> KvStore:
        if self.kv is None:
            raise ServiceUnavailableError(
                "this process has no database: KV state is kept by the kv workers and the "
                "harness (fork and promote through `roost session`, not here)"
            )
        return self.kv

    def require_vectors(self) -> VectorStore:
        if self.vectors is None:
            raise ServiceUnavailableError(
                "this process has no database: vectors are kept by the vec workers"
            )
        return self.vectors

    async def close(self) -> None:
        """Wait for running database work, then release every connection. Idempotent."""
        while self.closers:
            await self.closers.pop()()
        if self.db is not None:
            await self.db.close()

    async def __aenter__(self) -> Stores:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def vector_store_for(db: Database) -> VectorStore:
    """The vector backend for the database's engine."""
    if db.is_sqlite:
        return SqliteVecStore(db)
    if db.dialect == "postgresql":
        return PgVectorStore(db)
    raise NotImplementedError(
        f"no vector backend for {db.dialect} (sqlite-vec on SQLite and pgvector on Postgres "
        "are available)"
    )


def open_stores_sync(target: Settings | str, home: Path | str | None = None) -> Stores:
    """Blocking :func:`open_stores`, for code that is not async (scripts, migrations)."""
    if isinstance(target, str):
        url = target
        if home is None:
            raise ValueError("open_stores(url) needs home (where the secret key lives)")
    else:
        url = target.database_url
        home = target.home if home is None else home
    db = Database(url)
    try:
        db.migrate()
        return Stores(
            db=db,
            registry=SqlRegistryStore(db),
            state=SqlStateStore(db),
            kv=SqlKvStore(db),
            vectors=vector_store_for(db),
            secrets=SqlSecretStore(db, SecretKeyring(home)),
        )
    except BaseException:
        db.close_sync()
        raise


async def open_stores(target: Settings | str, home: Path | str | None = None) -> Stores:
    """Open (creating and migrating as needed) every store.

    ``target`` is roost's :class:`~roost.config.Settings` (database URL and home), or a
    SQLAlchemy database URL, in which case ``home`` (where ``secret.key`` lives) is required.
    """
    return await asyncio.to_thread(open_stores_sync, target, home)
