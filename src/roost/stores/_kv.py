"""Versioned KV on SQL, git-style and content-addressed.

* **blobs** hold bytes under their sha256: values, and trees;
* a **tree** is the canonical JSON of ``{key: value blob hash}`` stored as a blob, so equal
  mappings are one tree;
* a **commit** is ``(tree, parent, message)`` identified by the sha256 of its canonical
  JSON, so every state of every ref is kept and can be read back (``get_at``);
* a **ref** names the newest commit of a line of history.

A write builds the new tree and commit, then moves the ref with a compare-and-swap on its
previous commit, in one transaction; on a lost race the whole write is redone against the
new head, so concurrent writers never lose updates. Blobs, trees and commits are immutable
and cached.

Trees are flat: a write costs O(number of keys in the ref). That suits agent state (tens to
thousands of keys); nested trees would make it O(depth) if refs grow much larger.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Mapping

import msgspec
from sqlalchemy import delete, literal, select, update
from sqlalchemy.orm import Session as DbSession

from roost.protocol import InvalidRequestError, NotFoundError
from roost.stores._db import Conflict, Database, LruCache, canonical_json, rowcount, sha256_hex
from roost.stores._records import Commit
from roost.stores._schema import KvBlobRow, KvCommitRow, KvRefRow

MAX_KEY_LENGTH = 1024
_EMPTY_TREE: dict[str, str] = {}


def session_ref(agent: str, session: str, branch: str) -> str:
    """The ref of ``agent``'s session-scope KV on ``branch`` of ``session``."""
    return f"session/{session}/{branch}/{agent}"


def session_branch_prefix(session: str, branch: str) -> str:
    """The prefix of every session-scope ref of ``branch`` (one per agent)."""
    return f"session/{session}/{branch}/"


def agent_ref(agent: str) -> str:
    """The ref of ``agent``'s agent-scope KV (shared by all its sessions)."""
    return f"agent/{agent}"


def commit_id(tree: str, parent: str | None, message: str) -> str:
    """The content address of a commit."""
    return sha256_hex(canonical_json({"tree": tree, "parent": parent, "message": message}))


def _commit(row: KvCommitRow) -> Commit:
    return Commit(
        id=row.id, parent=row.parent, tree=row.tree, message=row.message, created_at=row.created_at
    )


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidRequestError("a KV key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidRequestError(f"KV key is longer than {MAX_KEY_LENGTH} characters")


def _check_ref(ref: str) -> None:
    if not ref or len(ref) > 512:
        raise InvalidRequestError(f"a KV ref is 1-512 characters, not {ref!r}")


class SqlKvStore:
    """:class:`~roost.stores.KvStore` on the shared SQL database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._trees: LruCache[str, dict[str, str]] = LruCache(512)
        self._commit_trees: LruCache[str, str] = LruCache(4096)

    # --- reads -------------------------------------------------------------------------

    async def get(self, ref: str, key: str) -> bytes | None:
        _check_key(key)
        return await self._db.reading(self._get_in, ref, key)

    def _get_in(self, s: DbSession, ref: str, key: str) -> bytes | None:
        return self._value_in(s, self._head_id(s, ref), key)

    async def get_at(self, commit: str, key: str) -> bytes | None:
        _check_key(key)
        return await self._db.reading(self._value_in, commit, key)

    def _value_in(self, s: DbSession, commit: str | None, key: str) -> bytes | None:
        blob = self._tree_at(s, commit).get(key)
        return None if blob is None else self._blob(s, blob)

    async def list(self, ref: str, prefix: str = "") -> builtins.list[str]:
        return await self._db.reading(self._list_in, ref, prefix)

    def _list_in(self, s: DbSession, ref: str, prefix: str) -> builtins.list[str]:
        return self._keys_in(s, self._head_id(s, ref), prefix)

    async def keys_at(self, commit: str, prefix: str = "") -> builtins.list[str]:
        return await self._db.reading(self._keys_in, commit, prefix)

    def _keys_in(self, s: DbSession, commit: str | None, prefix: str) -> builtins.list[str]:
        return sorted(k for k in self._tree_at(s, commit) if k.startswith(prefix))

    async def head(self, ref: str) -> Commit | None:
        return await self._db.reading(self._head_in, ref)

    def _head_in(self, s: DbSession, ref: str) -> Commit | None:
        head = self._head_id(s, ref)
        return None if head is None else _commit(self._commit_row(s, head))

    async def history(self, ref: str, limit: int | None = None) -> builtins.list[Commit]:
        return await self._db.reading(self._history_in, ref, limit)

    def _history_in(self, s: DbSession, ref: str, limit: int | None) -> builtins.list[Commit]:
        head = self._head_id(s, ref)
        if head is None or (limit is not None and limit <= 0):
            return []
        chain = (
            select(KvCommitRow.id, KvCommitRow.parent, literal(0).label("depth"))
            .where(KvCommitRow.id == head)
            .cte("chain", recursive=True)
        )
        step = select(KvCommitRow.id, KvCommitRow.parent, chain.c.depth + 1).join(
            chain, KvCommitRow.id == chain.c.parent
        )
        if limit is not None:
            step = step.where(chain.c.depth + 1 < limit)
        chain = chain.union_all(step)
        query = select(KvCommitRow).join(chain, KvCommitRow.id == chain.c.id)
        return [_commit(row) for row in s.scalars(query.order_by(chain.c.depth))]

    async def refs(self, prefix: str = "") -> dict[str, str]:
        return await self._db.reading(self._refs_in, prefix)

    def _refs_in(self, s: DbSession, prefix: str) -> dict[str, str]:
        query = select(KvRefRow.name, KvRefRow.commit).where(
            KvRefRow.name.startswith(prefix, autoescape=True)
        )
        return {name: commit for name, commit in s.execute(query.order_by(KvRefRow.name))}

    # --- writes ------------------------------------------------------------------------

    async def put(self, ref: str, key: str, value: bytes) -> str:
        _check_ref(ref)
        _check_key(key)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidRequestError(f"a KV value must be bytes, not {type(value).__name__}")
        data = bytes(value)

        def change(s: DbSession, tree: dict[str, str]) -> bool:
            blob = self._store_blob(s, data)
            if tree.get(key) == blob:
                return False
            tree[key] = blob
            return True

        head = await self._db.run(self._write, ref, f"put {key}", change)
        assert head is not None  # a put always leaves a commit
        return head

    async def delete(self, ref: str, key: str) -> str | None:
        _check_ref(ref)
        _check_key(key)

        def change(s: DbSession, tree: dict[str, str]) -> bool:
            return tree.pop(key, None) is not None

        return await self._db.run(self._write, ref, f"delete {key}", change)

    def _write(
        self, ref: str, message: str, change: Callable[[DbSession, dict[str, str]], bool]
    ) -> str | None:
        def work(s: DbSession) -> str | None:
            head = self._head_id(s, ref)
            tree = dict(self._tree_at(s, head))
            if not change(s, tree):
                return head
            tree_hash = self._store_blob(s, canonical_json(tree))
            new = commit_id(tree_hash, head, message)
            if s.get(KvCommitRow, new) is None:
                s.add(
                    KvCommitRow(
                        id=new, parent=head, tree=tree_hash, message=message, created_at=time.time()
                    )
                )
                s.flush()
            self._move_ref(s, ref, head, new)
            return new

        return self._db.transact(work, what=f"KV write to {ref!r}")

    async def set_ref(self, ref: str, commit: str | None) -> None:
        _check_ref(ref)

        def work(s: DbSession) -> None:
            if commit is None:
                s.execute(delete(KvRefRow).where(KvRefRow.name == ref))
            else:
                self._commit_row(s, commit)
                self._upsert_ref(s, ref, commit)

        await self._db.writing(work, what=f"set KV ref {ref!r}")

    async def copy_refs(self, src_prefix: str, dst_prefix: str) -> int:
        if src_prefix == dst_prefix:
            raise InvalidRequestError("copy_refs: source and destination prefixes are the same")

        def work(s: DbSession) -> int:
            found = self._refs_in(s, src_prefix)
            for name, commit in found.items():
                self._upsert_ref(s, dst_prefix + name[len(src_prefix) :], commit)
            return len(found)

        return await self._db.writing(work, what=f"copy KV refs {src_prefix!r}")

    async def fork_refs(self, session: str, branch: str, commits: Mapping[str, str]) -> None:
        prefix = session_branch_prefix(session, branch)
        wanted = {prefix + agent: commit for agent, commit in commits.items()}

        def work(s: DbSession) -> None:
            unknown = set(wanted.values()) - set(
                s.scalars(select(KvCommitRow.id).where(KvCommitRow.id.in_(set(wanted.values()))))
            )
            if unknown:
                raise NotFoundError(f"unknown KV commit(s): {', '.join(sorted(unknown))}")
            for name in self._refs_in(s, prefix):
                if name not in wanted:
                    s.execute(delete(KvRefRow).where(KvRefRow.name == name))
            for name, commit in wanted.items():
                self._upsert_ref(s, name, commit)

        await self._db.writing(work, what=f"fork KV refs to {prefix!r}")

    # --- internals (inside a transaction) ----------------------------------------------

    def _head_id(self, s: DbSession, ref: str) -> str | None:
        return s.scalar(select(KvRefRow.commit).where(KvRefRow.name == ref))

    def _commit_row(self, s: DbSession, commit: str) -> KvCommitRow:
        row = s.get(KvCommitRow, commit)
        if row is None:
            raise NotFoundError(f"unknown KV commit {commit!r}")
        return row

    def _tree_at(self, s: DbSession, commit: str | None) -> dict[str, str]:
        if commit is None:
            return _EMPTY_TREE
        tree_hash = self._commit_trees.get(commit)
        if tree_hash is None:
            tree_hash = self._commit_row(s, commit).tree
            self._commit_trees.put(commit, tree_hash)
        tree = self._trees.get(tree_hash)
        if tree is None:
            tree = msgspec.json.decode(self._blob(s, tree_hash), type=dict[str, str])
            self._trees.put(tree_hash, tree)
        return tree

    def _blob(self, s: DbSession, blob: str) -> bytes:
        data = s.scalar(select(KvBlobRow.data).where(KvBlobRow.hash == blob))
        if data is None:
            raise NotFoundError(f"KV blob {blob} is missing (the store is damaged)")
        return data

    def _store_blob(self, s: DbSession, data: bytes) -> str:
        blob = sha256_hex(data)
        if s.scalar(select(KvBlobRow.hash).where(KvBlobRow.hash == blob)) is None:
            s.add(KvBlobRow(hash=blob, data=data, size=len(data)))
            s.flush()
        return blob

    def _move_ref(self, s: DbSession, ref: str, old: str | None, new: str) -> None:
        """Compare-and-swap ``ref`` from ``old`` to ``new``; :class:`Conflict` if it moved."""
        now = time.time()
        if old is None:
            # a concurrent creator makes this insert fail (IntegrityError): transact retries
            s.add(KvRefRow(name=ref, commit=new, updated_at=now))
            s.flush()
            return
        result = s.execute(
            update(KvRefRow)
            .where(KvRefRow.name == ref, KvRefRow.commit == old)
            .values(commit=new, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) != 1:
            raise Conflict(f"KV ref {ref!r} moved")

    def _upsert_ref(self, s: DbSession, ref: str, commit: str) -> None:
        row = s.get(KvRefRow, ref)
        if row is None:
            s.add(KvRefRow(name=ref, commit=commit, updated_at=time.time()))
        else:
            row.commit = commit
            row.updated_at = time.time()
        s.flush()
