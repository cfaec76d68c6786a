"""Vector collections on SQLite with sqlite-vec.

Each collection keeps its embeddings in its own ``vec0`` virtual table
(``vec_embeddings_<collection id>``, dimension fixed when the collection is created by its
first upsert, cosine distance), whose rowids are the keys of the portable ``vec_items``
rows holding each item's id, metadata and text. The sqlite-vec extension is loaded into a
pooled connection the first time this store uses it (``pysqlite3`` can load extensions; the
stock ``sqlite3`` here cannot).

Search is exact (sqlite-vec scans; there is no approximate index). A ``where`` filter is
applied inside the KNN query (``rowid IN (matching items)``), so it returns the ``k``
nearest *matching* items even when the filter excludes almost everything. Metadata values
are compared by JSON type: ``1`` matches ``1`` and ``1.0`` but not ``true`` or ``"1"``.

This is the only module with SQLite-only SQL; the pgvector backend
(:mod:`roost.stores._pgvector`) implements the same :class:`~roost.stores.VectorStore`
interface over the same ``vec_collections`` / ``vec_items`` tables, with the helpers here.
"""

from __future__ import annotations

import builtins
import math
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.orm import Session as DbSession

from roost.protocol import InvalidRequestError, VectorHit, VectorItem
from roost.stores._db import Database
from roost.stores._records import CollectionInfo
from roost.stores._schema import BACKEND_TABLE_PREFIX, VecCollectionRow, VecItemRow

T = TypeVar("T")

METRIC = "cosine"
MAX_K = 4096  # sqlite-vec's limit on k
_SCALARS = (str, int, float, bool, type(None))


def embeddings_table(collection_id: int) -> str:
    return f"{BACKEND_TABLE_PREFIX}{int(collection_id)}"


def _ensure_vec(connection: Connection) -> None:
    """Load sqlite-vec into this pooled DBAPI connection (once per connection)."""
    pooled = connection.connection
    if pooled.info.get("sqlite_vec"):
        return
    import sqlite_vec  # imported when needed (it imports numpy)

    raw: Any = pooled.dbapi_connection
    raw.enable_load_extension(True)
    try:
        sqlite_vec.load(raw)
    finally:
        raw.enable_load_extension(False)
    pooled.info["sqlite_vec"] = True


def _f32(vector: list[float]) -> bytes:
    """A vector as sqlite-vec's float32 blob."""
    return array("f", vector).tobytes()


def as_vector(values: Sequence[float], what: str) -> list[float]:
    vector = [float(v) for v in values]
    if not vector:
        raise InvalidRequestError(f"{what} is empty")
    if not all(math.isfinite(v) for v in vector):
        raise InvalidRequestError(f"{what} has a NaN or infinite component")
    if not any(vector):
        raise InvalidRequestError(f"{what} is all zeros: its cosine distance is undefined")
    return vector


def latest_items(
    items: Sequence[VectorItem],
) -> tuple[dict[str, tuple[VectorItem, list[float]]], int]:
    """Validated items by id (the same id twice: the last one wins) and their dimension."""
    latest: dict[str, tuple[VectorItem, list[float]]] = {}
    dimension = 0
    for i, item in enumerate(items):
        if not item.id:
            raise InvalidRequestError(f"items[{i}] has an empty id")
        vector = as_vector(item.vector, f"the vector of item {item.id!r}")
        if dimension and len(vector) != dimension:
            raise InvalidRequestError(
                f"item {item.id!r} has dimension {len(vector)} but the items before it "
                f"have dimension {dimension}"
            )
        dimension = len(vector)
        latest[item.id] = (item, vector)
    return latest, dimension


def check_where(where: Mapping[str, Any]) -> None:
    """Reject filters other than string keys with scalar values."""
    for key, value in where.items():
        if not isinstance(key, str):
            raise InvalidRequestError(f"where: metadata keys are strings, not {key!r}")
        if not isinstance(value, _SCALARS):
            raise InvalidRequestError(
                f"where[{key!r}]: only string, number, boolean or null values can be "
                f"matched, not {type(value).__name__}"
            )


def _where_clause(where: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """SQL conditions on ``vec_items.metadata`` for an equality filter, and their params."""
    check_where(where)
    conditions: list[str] = []
    params: list[Any] = []
    for key, value in where.items():
        test = "SELECT 1 FROM json_each(vec_items.metadata) AS j WHERE j.key = ? AND "
        params.append(key)
        if value is None:
            test += "j.type = 'null'"
        elif isinstance(value, bool):
            test += f"j.type = '{'true' if value else 'false'}'"
        elif isinstance(value, int | float):
            test += "j.type IN ('integer', 'real') AND j.atom = ?"
            params.append(value)
        else:
            test += "j.type = 'text' AND j.atom = ?"
            params.append(value)
        conditions.append(f"EXISTS ({test})")
    return " AND ".join(conditions), params


class PortableVectorReads:
    """What every SQL vector backend shares: the portable tables (collections, ids,
    metadata, text), argument checks, and the shape of ``upsert``, ``delete``, ``drop`` and
    ``search``. A backend supplies its embedding storage (``_create_embeddings``,
    ``_write_embeddings``, ``_delete_embeddings``, ``_drop_embeddings``) and ``_nearest``."""

    _db: Database

    def _drop_embeddings(self, s: DbSession, collection_id: int) -> None:
        raise NotImplementedError

    def _where(self, where: Mapping[str, Any]) -> tuple[str, Any]:
        """The backend's SQL condition (and parameters) for a metadata filter."""
        raise NotImplementedError

    def _nearest(
        self, s: DbSession, collection_id: int, query: list[float], k: int, clause: Any
    ) -> builtins.list[VectorHit]:
        """The ``k`` items nearest ``query`` that match ``clause``, nearest first."""
        raise NotImplementedError

    def _search(
        self,
        s: DbSession,
        namespace: str,
        collection: str,
        query: list[float],
        k: int,
        where: Mapping[str, Any],
    ) -> builtins.list[VectorHit]:
        clause = self._where(where)  # a bad filter is an error even for a missing collection
        coll = find_collection(s, namespace, collection)
        if coll is None:
            return []
        if coll.dimension != len(query):
            raise InvalidRequestError(
                f"collection {collection!r} holds vectors of dimension {coll.dimension}; "
                f"the query vector has dimension {len(query)}"
            )
        return self._nearest(s, coll.id, query, k, clause)

    def _create_embeddings(self, s: DbSession, collection_id: int, dimension: int) -> None:
        raise NotImplementedError

    def _write_embeddings(
        self,
        s: DbSession,
        collection_id: int,
        replaced: Iterable[int],
        vectors: Iterable[tuple[int, list[float]]],
    ) -> None:
        """Store ``(key, vector)`` pairs; ``replaced`` keys already have a vector."""
        raise NotImplementedError

    def _delete_embeddings(self, s: DbSession, collection_id: int, keys: list[int]) -> None:
        """Remove the vectors of items ``keys`` (called just before the items go)."""
        raise NotImplementedError

    async def upsert(self, namespace: str, collection: str, items: Sequence[VectorItem]) -> int:
        check_names(namespace, collection)
        latest, dimension = latest_items(items)
        if not latest:
            return 0

        def work(s: DbSession) -> int:
            coll = find_collection(s, namespace, collection)
            if coll is None:
                # a concurrent creator makes one of these fail (IntegrityError): retried
                coll = VecCollectionRow(
                    namespace=namespace,
                    name=collection,
                    dimension=dimension,
                    metric=METRIC,
                    created_at=time.time(),
                )
                s.add(coll)
                s.flush()
                self._create_embeddings(s, coll.id, dimension)
            elif coll.dimension != dimension:
                raise InvalidRequestError(
                    f"collection {collection!r} holds vectors of dimension {coll.dimension}; "
                    f"these have dimension {dimension}"
                )
            existing = keys_of(s, coll.id, list(latest))
            now = time.time()
            if existing:
                s.execute(
                    update(VecItemRow),
                    [
                        {
                            "key": key,
                            "item_metadata": dict(latest[item_id][0].metadata),
                            "text": latest[item_id][0].text,
                            "updated_at": now,
                        }
                        for item_id, key in existing.items()
                    ],
                )
            new = [item_id for item_id in latest if item_id not in existing]
            keys = dict(existing)
            if new:
                inserted = s.execute(
                    insert(VecItemRow).returning(
                        VecItemRow.item_id, VecItemRow.key, sort_by_parameter_order=True
                    ),
                    [
                        {
                            "collection_id": coll.id,
                            "item_id": item_id,
                            "item_metadata": dict(latest[item_id][0].metadata),
                            "text": latest[item_id][0].text,
                            "updated_at": now,
                        }
                        for item_id in new
                    ],
                )
                keys.update((item_id, key) for item_id, key in inserted)
            self._write_embeddings(
                s,
                coll.id,
                existing.values(),
                [(keys[item_id], vector) for item_id, (_, vector) in latest.items()],
            )
            return len(latest)

        return await self._db.writing(work, what=f"upsert into {namespace}/{collection}")

    async def delete(self, namespace: str, collection: str, ids: Sequence[str]) -> int:
        check_names(namespace, collection)
        wanted = set(ids)
        if not wanted:
            return 0

        def work(s: DbSession) -> int:
            coll = find_collection(s, namespace, collection)
            if coll is None:
                return 0
            keys = list(keys_of(s, coll.id, list(wanted)).values())
            if keys:
                self._delete_embeddings(s, coll.id, keys)
                for chunk in chunks(keys):
                    s.execute(delete(VecItemRow).where(VecItemRow.key.in_(chunk)))
            return len(keys)

        return await self._db.writing(work, what=f"delete from {namespace}/{collection}")

    async def drop(self, namespace: str, collection: str) -> bool:
        check_names(namespace, collection)

        def work(s: DbSession) -> bool:
            coll = find_collection(s, namespace, collection)
            if coll is None:
                return False
            self._drop_embeddings(s, coll.id)
            s.execute(delete(VecItemRow).where(VecItemRow.collection_id == coll.id))
            s.execute(delete(VecCollectionRow).where(VecCollectionRow.id == coll.id))
            return True

        return await self._db.writing(work, what=f"drop {namespace}/{collection}")

    async def search(
        self,
        namespace: str,
        collection: str,
        vector: Sequence[float],
        k: int = 5,
        where: Mapping[str, Any] | None = None,
    ) -> builtins.list[VectorHit]:
        check_names(namespace, collection)
        if not 1 <= k <= MAX_K:
            raise InvalidRequestError(f"k must be between 1 and {MAX_K}, not {k}")
        query = as_vector(vector, "the query vector")
        return await self._db.reading(
            self._search, namespace, collection, query, k, dict(where or {})
        )

    async def count(self, namespace: str, collection: str) -> int:
        return await self._db.reading(self._count, namespace, collection)

    def _count(self, s: DbSession, namespace: str, collection: str) -> int:
        query = (
            select(func.count())
            .select_from(VecItemRow)
            .join(VecCollectionRow, VecCollectionRow.id == VecItemRow.collection_id)
            .where(VecCollectionRow.namespace == namespace, VecCollectionRow.name == collection)
        )
        return s.scalar(query) or 0

    async def collections(self, namespace: str | None = None) -> builtins.list[CollectionInfo]:
        return await self._db.reading(self._collections, namespace)

    def _collections(self, s: DbSession, namespace: str | None) -> builtins.list[CollectionInfo]:
        counts = (
            select(VecItemRow.collection_id, func.count().label("n"))
            .group_by(VecItemRow.collection_id)
            .subquery()
        )
        query = (
            select(VecCollectionRow, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.collection_id == VecCollectionRow.id)
            .order_by(VecCollectionRow.namespace, VecCollectionRow.name)
        )
        if namespace is not None:
            query = query.where(VecCollectionRow.namespace == namespace)
        return [
            CollectionInfo(
                namespace=row.namespace,
                name=row.name,
                dimension=row.dimension,
                metric=row.metric,
                count=int(n),
            )
            for row, n in s.execute(query)
        ]


class SqliteVecStore(PortableVectorReads):
    """:class:`~roost.stores.VectorStore` on SQLite with sqlite-vec (cosine distance)."""

    metric = METRIC

    def __init__(self, db: Database) -> None:
        if not db.is_sqlite:
            raise ValueError(f"SqliteVecStore needs a SQLite database, not {db.dialect}")
        self._db = db

    # --- writes ------------------------------------------------------------------------

    def _create_embeddings(self, s: DbSession, collection_id: int, dimension: int) -> None:
        connection = s.connection()
        _ensure_vec(connection)
        connection.exec_driver_sql(
            f"CREATE VIRTUAL TABLE {embeddings_table(collection_id)} USING "
            f"vec0(embedding float[{dimension}] distance_metric={METRIC})"
        )

    def _write_embeddings(
        self,
        s: DbSession,
        collection_id: int,
        replaced: Iterable[int],
        vectors: Iterable[tuple[int, list[float]]],
    ) -> None:
        connection = s.connection()
        _ensure_vec(connection)
        table = embeddings_table(collection_id)
        # vec0 tables have no upsert: replaced vectors are deleted, then all are inserted
        old = [(key,) for key in replaced]
        if old:
            connection.exec_driver_sql(f"DELETE FROM {table} WHERE rowid = ?", old)
        connection.exec_driver_sql(
            f"INSERT INTO {table}(rowid, embedding) VALUES (?, ?)",
            [(key, _f32(vector)) for key, vector in vectors],
        )

    def _delete_embeddings(self, s: DbSession, collection_id: int, keys: list[int]) -> None:
        connection = s.connection()
        _ensure_vec(connection)
        connection.exec_driver_sql(
            f"DELETE FROM {embeddings_table(collection_id)} WHERE rowid = ?",
            [(k,) for k in keys],
        )

    def _drop_embeddings(self, s: DbSession, collection_id: int) -> None:
        connection = s.connection()
        _ensure_vec(connection)
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {embeddings_table(collection_id)}")

    # --- reads -------------------------------------------------------------------------

    def _where(self, where: Mapping[str, Any]) -> tuple[str, Any]:
        return _where_clause(where)

    def _nearest(
        self, s: DbSession, collection_id: int, query: list[float], k: int, clause: Any
    ) -> builtins.list[VectorHit]:
        conditions, params = clause
        connection = s.connection()
        _ensure_vec(connection)
        sql = (
            f"SELECT rowid, distance FROM {embeddings_table(collection_id)} "
            "WHERE embedding MATCH ? AND k = ?"
        )
        args: list[Any] = [_f32(query), k]
        if conditions:
            sql += (
                " AND rowid IN (SELECT key FROM vec_items "
                f"WHERE vec_items.collection_id = ? AND {conditions})"
            )
            args += [collection_id, *params]
        nearest: dict[int, float] = {
            int(key): float(distance)
            for key, distance in connection.exec_driver_sql(sql, tuple(args))
        }
        if not nearest:
            return []
        rows = s.scalars(select(VecItemRow).where(VecItemRow.key.in_(nearest)))
        hits = [
            VectorHit(
                id=row.item_id,
                distance=nearest[row.key],
                metadata=row.item_metadata,
                text=row.text,
            )
            for row in rows
        ]
        hits.sort(key=lambda hit: (hit.distance, hit.id))
        return hits


def check_names(namespace: str, collection: str) -> None:
    if not namespace:
        raise InvalidRequestError("a vector namespace must not be empty")
    if not collection or len(collection) > 200:
        raise InvalidRequestError(f"a collection name is 1-200 characters, not {collection!r}")


def chunks(values: list[T], size: int = 500) -> Iterator[list[T]]:
    """Bounded IN lists (SQLite limits the number of bound parameters)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def keys_of(s: DbSession, collection_id: int, item_ids: list[str]) -> dict[str, int]:
    """The row keys of the given items that exist in the collection."""
    keys: dict[str, int] = {}
    for chunk in chunks(item_ids):
        query = select(VecItemRow.item_id, VecItemRow.key).where(
            VecItemRow.collection_id == collection_id, VecItemRow.item_id.in_(chunk)
        )
        keys.update((item_id, key) for item_id, key in s.execute(query))
    return keys


def find_collection(s: DbSession, namespace: str, name: str) -> VecCollectionRow | None:
    query = select(VecCollectionRow).where(
        VecCollectionRow.namespace == namespace, VecCollectionRow.name == name
    )
    return s.scalars(query).first()
