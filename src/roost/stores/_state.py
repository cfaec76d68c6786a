"""Session state on SQL: sessions, branches and the content-addressed DAG of nodes.

A node's id is the sha256 of the canonical JSON of ``[session id, parent id, kind,
content]``. A branch is a movable pointer (``head``) into the DAG; appending moves it with a
compare-and-swap on the old head, so concurrent appends to one branch form a single chain.
A branch's nodes are the ancestry of its head (a recursive CTE), which is how a fork shares
the nodes before its fork point.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import msgspec
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session as DbSession

from roost.protocol import InvalidRequestError, NotFoundError, new_id
from roost.stores._db import Conflict, Database, GroupCommit, canonical_json, sha256_hex
from roost.stores._records import NODE_KINDS, Branch, Node, NodeKind, Session
from roost.stores._schema import BranchRow, NodeRow, SessionRow

MAIN_BRANCH = "main"
_BRANCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SESSION_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_OPAQUE_ID = re.compile(r"[0-9a-f]{32}")
_NAME_ATTEMPTS = 20

_ADJECTIVES = (
    "amber", "ancient", "autumn", "bold", "brave", "bright", "brisk", "calm", "clever", "cosmic",
    "crimson", "curious", "dapper", "daring", "dawn", "eager", "early", "fancy", "fearless",
    "gentle", "giddy", "golden", "grand", "happy", "hidden", "humble", "icy", "jolly", "keen",
    "kind", "lively", "lucky", "lunar", "merry", "misty", "mellow", "nimble", "noble", "odd",
    "patient", "plucky", "polar", "proud", "quick", "quiet", "rapid", "rustic", "shy", "silent",
    "silver", "sleepy", "smooth", "snowy", "solar", "spry", "steady", "stormy", "sunny", "swift",
    "tidy", "tiny", "vivid", "wandering", "wise", "witty", "young", "zesty",
)  # fmt: skip
_ANIMALS = (
    "albatross", "badger", "beaver", "bison", "crane", "cricket", "dolphin", "eagle", "egret",
    "falcon", "ferret", "finch", "fox", "gecko", "gull", "hare", "hawk", "heron", "ibis",
    "jackal", "jay", "kestrel", "kiwi", "koala", "lark", "lemur", "lynx", "magpie", "marmot",
    "marten", "mole", "moose", "newt", "ocelot", "orca", "osprey", "otter", "owl", "panda",
    "pelican", "penguin", "petrel", "puffin", "quail", "raven", "robin", "salmon", "seal",
    "shrike", "sparrow", "stoat", "swan", "swift", "tapir", "tern", "thrush", "toad", "trout",
    "turtle", "vole", "walrus", "weasel", "wombat", "wren", "yak", "zebra",
)  # fmt: skip


def node_id(session_id: str, parent: str | None, kind: str, content: dict[str, Any]) -> str:
    """The content address of a node (sha256 hex of canonical JSON)."""
    return sha256_hex(canonical_json([session_id, parent, kind, content]))


def generate_session_name() -> str:
    """A readable random session name like ``brave-otter-4821``."""
    return (
        f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_ANIMALS)}-{1000 + secrets.randbelow(9000)}"
    )


def _session(row: SessionRow) -> Session:
    return Session(
        id=row.id,
        name=row.name,
        agent=row.agent,
        status=row.status,
        main_branch=row.main_branch,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _branch(row: BranchRow) -> Branch:
    return Branch(
        session=row.session_id,
        name=row.name,
        head=row.head,
        created_from=row.created_from,
        created_at=row.created_at,
    )


_NODES: Table = NodeRow.__table__  # type: ignore[assignment]
_SESSIONS: Table = SessionRow.__table__  # type: ignore[assignment]
_BRANCHES: Table = BranchRow.__table__  # type: ignore[assignment]


def _append_target(session_matches: ColumnElement[bool]) -> Select[Any]:
    """Everything an append needs to know, in one statement: the session, its branch's
    head (NULL columns: no such branch), and the node of an already recorded message."""
    recorded = (
        select(_NODES.c.seq)
        .where(
            _NODES.c.session_id == _SESSIONS.c.id,
            _NODES.c.message_id == bindparam("mid"),
            _NODES.c.kind == bindparam("kind"),
        )
        .limit(1)
        .scalar_subquery()
    )
    branch = and_(_BRANCHES.c.session_id == _SESSIONS.c.id, _BRANCHES.c.name == bindparam("branch"))
    return (
        select(
            _SESSIONS.c.id,
            _SESSIONS.c.name,
            _BRANCHES.c.name.label("branch"),
            _BRANCHES.c.head,
            recorded.label("recorded"),
        )
        .select_from(_SESSIONS.outerjoin(_BRANCHES, branch))
        .where(session_matches)
    )


_BRANCH_NAMES = (
    select(_BRANCHES.c.name)
    .where(_BRANCHES.c.session_id == bindparam("sid"))
    .order_by(_BRANCHES.c.created_at, _BRANCHES.c.name)
)
_WITHIN_A_RUN = frozenset({"request", "response", "event"})
_SESSION_NAMED = select(_SESSIONS.c.id).where(_SESSIONS.c.name == bindparam("name"))
_APPEND_TARGET_BY_ID = _append_target(_SESSIONS.c.id == bindparam("ref"))
_APPEND_TARGET_BY_NAME = _append_target(_SESSIONS.c.name == bindparam("ref"))
_NODE_BY_ID = select(_NODES).where(_NODES.c.id == bindparam("nid"))
_NODE_BY_SEQ = select(_NODES).where(_NODES.c.seq == bindparam("seq"))
_INSERT_NODE = insert(_NODES)
_INSERT_SESSION = insert(_SESSIONS)
_INSERT_BRANCH = insert(_BRANCHES)
_MOVE_HEAD = (
    update(_BRANCHES)
    .where(
        _BRANCHES.c.session_id == bindparam("sid"),
        _BRANCHES.c.name == bindparam("branch"),
        _BRANCHES.c.head == bindparam("old"),
    )
    .values(head=bindparam("new"))
)
_MOVE_HEAD_FROM_ROOT = (
    update(_BRANCHES)
    .where(
        _BRANCHES.c.session_id == bindparam("sid"),
        _BRANCHES.c.name == bindparam("branch"),
        _BRANCHES.c.head.is_(None),
    )
    .values(head=bindparam("new"))
)
_TOUCH_SESSION = (
    update(_SESSIONS).where(_SESSIONS.c.id == bindparam("sid")).values(updated_at=bindparam("now"))
)


class _Append(NamedTuple):
    session: str
    branch: str
    kind: str
    content: dict[str, Any]


def _node_of(row: Any) -> Node:
    """A :class:`Node` from a Core row mapping of the nodes table."""
    return Node(
        id=row["id"],
        session=row["session_id"],
        branch=row["branch"],
        parent=row["parent"],
        kind=cast(NodeKind, row["kind"]),
        content=row["content"],
        created_at=row["created_at"],
        seq=row["seq"],
    )


def _node(row: NodeRow) -> Node:
    return Node(
        id=row.id,
        session=row.session_id,
        branch=row.branch,
        parent=row.parent,
        kind=cast(NodeKind, row.kind),
        content=row.content,
        created_at=row.created_at,
        seq=row.seq,
    )


def _check_branch_name(name: str) -> None:
    if not _BRANCH_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"invalid branch name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


class SqlStateStore:
    """:class:`~roost.stores.StateStore` on the shared SQL database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # appends are the hottest write (one per recorded message of every run): concurrent
        # ones share a transaction
        self._appends = GroupCommit(self._db, self._append, what="append to a session")
        # and nearly every run starts a session
        self._new_sessions = GroupCommit(self._db, self._create_session, what="create a session")

    # --- sessions ----------------------------------------------------------------------

    async def create_session(self, agent: str, name: str | None = None) -> Session:
        if not agent:
            raise InvalidRequestError("a session needs the agent it belongs to")
        if name is not None and (not _SESSION_NAME.fullmatch(name) or _OPAQUE_ID.fullmatch(name)):
            raise InvalidRequestError(
                f"invalid session name {name!r}: use 1-100 lowercase letters, digits, '.', '_' "
                "or '-' (and not 32 hex digits, which look like a session id)"
            )
        return await self._new_sessions.submit((agent, name))

    def _create_session(self, c: Connection, request: tuple[str, str | None]) -> Session:
        """One new session, in the caller's transaction (see :class:`GroupCommit`)."""
        agent, name = request
        chosen = name
        if chosen is None:
            for _ in range(_NAME_ATTEMPTS):
                candidate = generate_session_name()
                if c.execute(_SESSION_NAMED, {"name": candidate}).first() is None:
                    chosen = candidate
                    break
            else:
                raise Conflict("no free session name found")
        elif c.execute(_SESSION_NAMED, {"name": chosen}).first() is not None:
            raise InvalidRequestError(f"a session named {chosen!r} already exists")
        now = time.time()
        row: dict[str, Any] = {
            "id": new_id(),
            "name": chosen,
            "agent": agent,
            "status": "active",
            "main_branch": MAIN_BRANCH,
            "created_at": now,
            "updated_at": now,
        }
        session = Session(**row)
        c.execute(_INSERT_SESSION, row)
        branch = {"session_id": session.id, "name": MAIN_BRANCH, "created_at": now}
        c.execute(_INSERT_BRANCH, branch)
        return session

    async def get_session(self, session: str) -> Session:
        return await self._db.run(self._get_session, session)

    def _get_session(self, session: str) -> Session:
        with self._db.read() as s:
            return _session(_session_row(s, session))

    async def list_sessions(self, agent: str | None = None, limit: int = 50) -> list[Session]:
        return await self._db.run(self._list_sessions, agent, limit)

    def _list_sessions(self, agent: str | None, limit: int) -> list[Session]:
        query = select(SessionRow).order_by(SessionRow.created_at.desc(), SessionRow.id)
        if agent is not None:
            query = query.where(SessionRow.agent == agent)
        with self._db.read() as s:
            return [_session(row) for row in s.scalars(query.limit(max(limit, 0)))]

    async def set_status(self, session: str, status: str) -> Session:
        if not status or len(status) > 32:
            raise InvalidRequestError(f"a session status is 1-32 characters, not {status!r}")

        def work(s: DbSession) -> Session:
            row = _session_row(s, session)
            row.status = status
            row.updated_at = time.time()
            return _session(row)

        return await self._db.writing(work, what="set session status")

    # --- nodes -------------------------------------------------------------------------

    async def append_node(
        self, session: str, branch: str, kind: NodeKind | str, content: dict[str, Any]
    ) -> Node:
        if kind not in NODE_KINDS:
            raise InvalidRequestError(
                f"unknown node kind {kind!r} (one of: {', '.join(sorted(NODE_KINDS))})"
            )
        try:
            # normalized through JSON: the stored (and returned) content is what was hashed
            content = msgspec.json.decode(canonical_json(content))
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidRequestError(f"node content is not JSON-serializable: {exc}") from exc
        if not isinstance(content, dict):
            raise InvalidRequestError("node content must be a JSON object")
        return await self._appends.submit(_Append(session, branch, kind, content))

    def _append(self, c: Connection, append: _Append) -> Node:
        """One append, in the caller's transaction (see :class:`GroupCommit`: failed
        preconditions raise before anything is written). Core statements: three for a
        run's inner nodes, four for its invoke and complete (they also touch the session)."""
        session, branch, kind, content = append
        message_id = content.get("id") if isinstance(content.get("id"), str) else None
        params = {"ref": session, "branch": branch, "mid": message_id, "kind": kind}
        target = (
            c.execute(_APPEND_TARGET_BY_ID, params).first()
            or c.execute(_APPEND_TARGET_BY_NAME, params).first()
        )
        if target is None:
            raise NotFoundError(
                f"unknown session {session!r} (neither a session id nor a session name)"
            )
        sid = target.id
        if target.recorded is not None:  # the same message recorded again: idempotent
            return _node_of(c.execute(_NODE_BY_SEQ, {"seq": target.recorded}).one()._mapping)
        if target.branch is None:
            known = ", ".join(c.execute(_BRANCH_NAMES, {"sid": sid}).scalars())
            raise NotFoundError(
                f"session {target.name} has no branch {branch!r} (branches: {known})"
            )
        parent = target.head
        nid = node_id(sid, parent, kind, content)
        now = time.time()
        # A message's node id covers its message id, so for messages the lookup above
        # already found any identical node; other content may repeat under one parent.
        row = None if message_id else c.execute(_NODE_BY_ID, {"nid": nid}).first()
        if row is not None:  # the same content under the same parent is the same node
            node = _node_of(row._mapping)
        else:
            values = {
                "id": nid,
                "session_id": sid,
                "branch": branch,
                "parent": parent,
                "kind": kind,
                "content": content,
                "created_at": now,
                "message_id": message_id,
            }
            inserted = c.execute(_INSERT_NODE, values)
            (seq,) = inserted.inserted_primary_key or (None,)
            node = _node_of({**values, "seq": seq})
        move = _MOVE_HEAD_FROM_ROOT if parent is None else _MOVE_HEAD
        moved = c.execute(move, {"sid": sid, "branch": branch, "old": parent, "new": nid})
        if moved.rowcount != 1:
            raise Conflict(f"head of {target.name}/{branch} moved")
        if kind not in _WITHIN_A_RUN:  # a run's many inner nodes leave updated_at alone
            c.execute(_TOUCH_SESSION, {"sid": sid, "now": now})
        return node

    async def get_node(self, node_id: str) -> Node:
        return await self._db.run(self._get_node, node_id)

    def _get_node(self, node_id: str) -> Node:
        with self._db.read() as s:
            return _node(_node_row(s, node_id))

    async def list_nodes(self, session: str, branch: str | None = None) -> list[Node]:
        return await self._db.run(self._list_nodes, session, branch)

    def _list_nodes(self, session: str, branch: str | None) -> list[Node]:
        with self._db.read() as s:
            sess = _session_row(s, session)
            head = _branch_row(s, sess, branch or sess.main_branch).head
            return [] if head is None else [_node(r) for r in _path_to(s, head)]

    async def all_nodes(self, session: str) -> list[Node]:
        return await self._db.run(self._all_nodes, session)

    def _all_nodes(self, session: str) -> list[Node]:
        with self._db.read() as s:
            sess = _session_row(s, session)
            query = select(NodeRow).where(NodeRow.session_id == sess.id).order_by(NodeRow.seq)
            return [_node(row) for row in s.scalars(query)]

    async def ancestors(self, node_id: str) -> list[Node]:
        return await self._db.run(self._ancestors, node_id)

    def _ancestors(self, node_id: str) -> list[Node]:
        with self._db.read() as s:
            _node_row(s, node_id)
            return [_node(r) for r in _path_to(s, node_id)]

    # --- branches ----------------------------------------------------------------------

    async def fork(self, session: str, from_node: str, new_branch: str | None = None) -> Branch:
        if new_branch is not None:
            _check_branch_name(new_branch)

        def work(s: DbSession) -> Branch:
            sess = _session_row(s, session)
            node = _node_row(s, from_node)
            if node.session_id != sess.id:
                raise NotFoundError(f"node {from_node!r} is not in session {sess.name}")
            taken = set(s.scalars(select(BranchRow.name).where(BranchRow.session_id == sess.id)))
            name = new_branch
            if name is None:
                name = next(
                    f"fork-{n}" for n in range(1, len(taken) + 2) if f"fork-{n}" not in taken
                )
            elif name in taken:
                raise InvalidRequestError(f"branch {name!r} already exists in session {sess.name}")
            row = BranchRow(
                session_id=sess.id,
                name=name,
                head=node.id,
                created_from=node.id,
                created_at=time.time(),
            )
            s.add(row)
            return _branch(row)

        return await self._db.writing(work, what="fork a branch")

    async def promote(self, session: str, branch: str) -> Session:
        def work(s: DbSession) -> Session:
            sess = _session_row(s, session)
            _branch_row(s, sess, branch)
            sess.main_branch = branch
            sess.updated_at = time.time()
            return _session(sess)

        return await self._db.writing(work, what=f"promote branch {branch!r}")

    async def get_branch(self, session: str, branch: str) -> Branch:
        return await self._db.run(self._get_branch, session, branch)

    def _get_branch(self, session: str, branch: str) -> Branch:
        with self._db.read() as s:
            return _branch(_branch_row(s, _session_row(s, session), branch))

    async def list_branches(self, session: str) -> list[Branch]:
        return await self._db.run(self._list_branches, session)

    def _list_branches(self, session: str) -> list[Branch]:
        with self._db.read() as s:
            sess = _session_row(s, session)
            return [_branch(row) for row in _branch_rows(s, sess.id)]


def _session_row(s: DbSession, ref: str) -> SessionRow:
    row = s.get(SessionRow, ref)
    if row is None:
        row = s.scalars(select(SessionRow).where(SessionRow.name == ref)).first()
    if row is None:
        raise NotFoundError(f"unknown session {ref!r} (neither a session id nor a session name)")
    return row


def _branch_rows(s: DbSession, session_id: str) -> Sequence[BranchRow]:
    query = (
        select(BranchRow)
        .where(BranchRow.session_id == session_id)
        .order_by(BranchRow.created_at, BranchRow.name)
    )
    return s.scalars(query).all()


def _branch_row(s: DbSession, session: SessionRow, name: str) -> BranchRow:
    row = s.get(BranchRow, (session.id, name))
    if row is None:
        known = ", ".join(b.name for b in _branch_rows(s, session.id))
        raise NotFoundError(f"session {session.name} has no branch {name!r} (branches: {known})")
    return row


def _node_row(s: DbSession, nid: str) -> NodeRow:
    row = s.scalars(select(NodeRow).where(NodeRow.id == nid)).first()
    if row is None:
        raise NotFoundError(f"unknown node {nid!r}")
    return row


def _path_to(s: DbSession, nid: str) -> Sequence[NodeRow]:
    """The node ``nid`` and all its ancestors, oldest first (a parent's seq is smaller)."""
    path = select(NodeRow.seq, NodeRow.parent).where(NodeRow.id == nid).cte("path", recursive=True)
    path = path.union_all(
        select(NodeRow.seq, NodeRow.parent).join(path, NodeRow.id == path.c.parent)
    )
    query = select(NodeRow).join(path, NodeRow.seq == path.c.seq).order_by(NodeRow.seq)
    return s.scalars(query).all()
