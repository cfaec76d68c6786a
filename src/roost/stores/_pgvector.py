"""Vector collections on Postgres with pgvector.

The same layout as the sqlite-vec backend (:mod:`roost.stores._vectors`): the portable
``vec_collections`` / ``vec_items`` tables hold each collection and each item's id, metadata
and text, and every collection keeps its embeddings in a table of its own,
``vec_embeddings_<collection id>`` (``key`` = the item's ``vec_items.key``, ``embedding
vector(<dimension>)``, the dimension fixed by the collection's first upsert), so a dimension
mismatch is impossible by construction and a collection is dropped with its table.

The ``vector`` extension is created (``CREATE EXTENSION IF NOT EXISTS vector``) by the first
upsert that creates a collection; that needs a role allowed to create it (the superuser of
the dev server is). Vectors travel as pgvector's text form (``'[1.0,2.0]'::vector``), so no
extra client package is needed.

Search is exact (a scan ordered by the cosine distance ``<=>``; no approximate index yet),
so a ``where`` filter inside the query returns the ``k`` nearest *matching* items, and the
results equal sqlite-vec's. Metadata values are compared by JSON type, as on SQLite: ``1``
matches ``1`` and ``1.0`` but not ``true`` or ``"1"``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session as DbSession

from roost.protocol import VectorHit
from roost.stores._db import Database
from roost.stores._vectors import (
    METRIC,
    PortableVectorReads,
    check_where,
    embeddings_table,
)


def _literal(vector: Sequence[float]) -> str:
    """A vector in pgvector's text form."""
    return "[" + ",".join(repr(float(v)) for v in vector) + "]"


def _where_clause(where: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """SQL conditions on ``vec_items.metadata`` (``json``) for an equality filter."""
    check_where(where)
    conditions: list[str] = []
    params: dict[str, Any] = {}
    for i, (key, value) in enumerate(where.items()):
        params[f"wk{i}"] = key
        field = f"(vec_items.metadata -> CAST(:wk{i} AS text))"
        if value is None:
            conditions.append(f"json_typeof{field} = 'null'")
        elif isinstance(value, bool):
            conditions.append(f"json_typeof{field} = 'boolean' AND {field}::text = :wv{i}")
            params[f"wv{i}"] = "true" if value else "false"
        elif isinstance(value, int | float):
            # numbers compare as doubles, like SQLite's integer/real comparison
            conditions.append(
                f"json_typeof{field} = 'number' AND "
                f"CAST(vec_items.metadata ->> CAST(:wk{i} AS text) AS double precision) "
                f"= CAST(:wv{i} AS double precision)"
            )
            params[f"wv{i}"] = float(value)
        else:
            conditions.append(
                f"json_typeof{field} = 'string' AND "
                f"vec_items.metadata ->> CAST(:wk{i} AS text) = CAST(:wv{i} AS text)"
            )
            params[f"wv{i}"] = value
    return " AND ".join(conditions), params


class PgVectorStore(PortableVectorReads):
    """:class:`~roost.stores.VectorStore` on Postgres with pgvector (cosine distance)."""

    metric = METRIC

    def __init__(self, db: Database) -> None:
        if db.dialect != "postgresql":
            raise ValueError(f"PgVectorStore needs a Postgres database, not {db.dialect}")
        self._db = db

    # --- writes ------------------------------------------------------------------------

    def _create_embeddings(self, s: DbSession, collection_id: int, dimension: int) -> None:
        s.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        s.execute(
            text(
                f"CREATE TABLE {embeddings_table(collection_id)} ("
                "key integer PRIMARY KEY REFERENCES vec_items (key) ON DELETE CASCADE, "
                f"embedding vector({dimension}) NOT NULL)"
            )
        )

    def _write_embeddings(
        self,
        s: DbSession,
        collection_id: int,
        replaced: Iterable[int],
        vectors: Iterable[tuple[int, list[float]]],
    ) -> None:
        s.execute(
            text(
                f"INSERT INTO {embeddings_table(collection_id)} (key, embedding) "
                "VALUES (:key, CAST(:embedding AS vector)) "
                "ON CONFLICT (key) DO UPDATE SET embedding = EXCLUDED.embedding"
            ),
            [{"key": key, "embedding": _literal(vector)} for key, vector in vectors],
        )

    def _delete_embeddings(self, s: DbSession, collection_id: int, keys: list[int]) -> None:
        pass  # embeddings go with their items (ON DELETE CASCADE)

    def _drop_embeddings(self, s: DbSession, collection_id: int) -> None:
        s.execute(text(f"DROP TABLE IF EXISTS {embeddings_table(collection_id)}"))

    # --- reads -------------------------------------------------------------------------

    def _where(self, where: Mapping[str, Any]) -> tuple[str, Any]:
        return _where_clause(where)

    def _nearest(
        self, s: DbSession, collection_id: int, query: list[float], k: int, clause: Any
    ) -> builtins.list[VectorHit]:
        conditions, params = clause
        sql = (
            "SELECT vec_items.item_id, vec_items.metadata, vec_items.text, "
            "e.embedding <=> CAST(:query AS vector) AS distance "
            f"FROM {embeddings_table(collection_id)} AS e JOIN vec_items ON vec_items.key = e.key"
        )
        if conditions:
            sql += f" WHERE {conditions}"
        sql += " ORDER BY distance, vec_items.item_id LIMIT :k"
        rows = s.execute(text(sql), {"query": _literal(query), "k": k, **params})
        return [
            VectorHit(id=item_id, distance=float(distance), metadata=metadata, text=item_text)
            for item_id, metadata, item_text, distance in rows
        ]
