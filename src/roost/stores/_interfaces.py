"""The store interfaces: what the rest of roost may rely on.

Every method is a coroutine; implementations keep blocking work off the event loop. Errors
are :class:`~roost.protocol.NotFoundError` for unknown names (the message names what was
looked up) and :class:`~roost.protocol.InvalidRequestError` for bad arguments or conflicts.
Methods named ``get_*`` return ``None`` for absent registry entries instead.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from roost.protocol import VectorHit, VectorItem
from roost.stores._records import (
    AgentRecord,
    Branch,
    Capability,
    CollectionInfo,
    Commit,
    ModelRecord,
    Node,
    NodeKind,
    Session,
    WorkerRecord,
)


class RegistryStore(Protocol):
    """Deployed agents (versioned), registered models, and local capabilities."""

    async def next_agent_version(self, name: str) -> int:
        """The version the next deployment of ``name`` gets (1 for a new agent)."""
        ...

    async def put_agent(
        self, name: str, version: int, manifest: dict[str, Any], path: str
    ) -> AgentRecord:
        """Record version ``version`` of agent ``name``; an existing version is an error."""
        ...

    async def deploy_agent(self, name: str, manifest: dict[str, Any], path: str) -> AgentRecord:
        """Record a new version of ``name`` (the next version number, allocated atomically)."""
        ...

    async def get_agent(self, name: str, version: int | None = None) -> AgentRecord | None:
        """The latest (or the given) version of agent ``name``; ``None`` if not deployed."""
        ...

    async def list_agents(self) -> list[AgentRecord]:
        """The latest version of every deployed agent, by name."""
        ...

    async def agent_versions(self, name: str) -> list[AgentRecord]:
        """Every deployed version of ``name``, oldest first."""
        ...

    async def delete_agent(self, name: str) -> int:
        """Delete every version of ``name``; returns how many. Unknown agent: NotFoundError."""
        ...

    async def add_model(self, record: ModelRecord, *, replace: bool = False) -> None:
        """Register a model; a taken name is an error unless ``replace``."""
        ...

    async def get_model(self, name: str) -> ModelRecord | None:
        """The model registered as ``name``, or ``None``."""
        ...

    async def list_models(self) -> list[ModelRecord]:
        """All registered models, by name."""
        ...

    async def remove_model(self, name: str) -> None:
        """Unregister a model. Unknown model: NotFoundError."""
        ...

    async def set_capability(self, service: str, details: dict[str, Any]) -> Capability:
        """Record (or refresh) what ``service`` offers here."""
        ...

    async def get_capability(self, service: str) -> Capability | None:
        """What ``service`` last reported, or ``None``."""
        ...

    async def list_capabilities(self) -> list[Capability]:
        """Every recorded capability, by service."""
        ...

    async def remove_capability(self, service: str) -> None:
        """Forget ``service`` (no error if unknown)."""
        ...

    async def put_agent_bundle(self, name: str, version: int, bundle: bytes) -> str:
        """Store the files of a version (a gzipped tar of its folder), so workers on any
        node can materialize it; returns the bundle's sha256 (hex). Deploying stores the
        bundle *before* the version (``put_agent``), so a visible version has its files."""
        ...

    async def get_agent_bundle(self, name: str, version: int) -> bytes | None:
        """The bundle of a deployed version, or ``None`` if none was stored."""
        ...

    async def register_worker(
        self,
        worker_id: str,
        *,
        node: str,
        role: str,
        pid: int,
        address: str = "",
        capabilities: dict[str, Any] | None = None,
    ) -> WorkerRecord:
        """Record (or refresh) a worker; its heartbeat is now."""
        ...

    async def heartbeat_worker(
        self, worker_id: str, capabilities: dict[str, Any] | None = None
    ) -> bool:
        """Refresh a worker's heartbeat (and its capabilities, if given). ``False`` if the
        worker is unknown (expired or never registered): it should register again."""
        ...

    async def list_workers(self, *, live_within_s: float | None = None) -> list[WorkerRecord]:
        """Registered workers (only those heard from within ``live_within_s``, if given),
        by node, role and id."""
        ...

    async def remove_worker(self, worker_id: str) -> None:
        """Forget a worker (no error if unknown): a clean shutdown says goodbye."""
        ...

    async def expire_workers(self, older_than_s: float) -> int:
        """Forget workers not heard from for ``older_than_s`` seconds; returns how many."""
        ...


class StateStore(Protocol):
    """Sessions, their branches, and the content-addressed DAG of recorded messages.

    ``session`` arguments accept the session's id or its name.
    """

    async def create_session(self, agent: str, name: str | None = None) -> Session:
        """A new session of ``agent`` with an empty ``main`` branch. ``name`` defaults to a
        generated readable name (``brave-otter-4821``); a taken name is an error."""
        ...

    async def get_session(self, session: str) -> Session:
        """The session with this id or name."""
        ...

    async def list_sessions(self, agent: str | None = None, limit: int = 50) -> list[Session]:
        """Sessions (of ``agent`` if given), newest first."""
        ...

    async def set_status(self, session: str, status: str) -> Session:
        """Set a session's free-form status (``active`` when created)."""
        ...

    async def append_node(
        self, session: str, branch: str, kind: NodeKind | str, content: dict[str, Any]
    ) -> Node:
        """Append a node to ``branch``: its parent is the branch head, which then moves to
        the new node, atomically (concurrent appends form one chain)."""
        ...

    async def get_node(self, node_id: str) -> Node:
        """The node with this id."""
        ...

    async def list_nodes(self, session: str, branch: str | None = None) -> list[Node]:
        """The nodes of ``branch`` (default: the main branch), oldest first: the ancestry of
        its head, so a fork lists the nodes it shares with its origin, then its own."""
        ...

    async def all_nodes(self, session: str) -> list[Node]:
        """Every node of the session, on any branch, in insertion order."""
        ...

    async def ancestors(self, node_id: str) -> list[Node]:
        """The path from the session's first node to ``node_id`` (inclusive), oldest first."""
        ...

    async def fork(self, session: str, from_node: str, new_branch: str | None = None) -> Branch:
        """A new branch whose head is ``from_node`` (a node of this session). The name
        defaults to the first free ``fork-N``; a taken name is an error."""
        ...

    async def promote(self, session: str, branch: str) -> Session:
        """Make ``branch`` the session's main branch."""
        ...

    async def get_branch(self, session: str, branch: str) -> Branch:
        """One branch of a session."""
        ...

    async def list_branches(self, session: str) -> list[Branch]:
        """A session's branches, oldest first."""
        ...


class SecretStore(Protocol):
    """Named secrets, encrypted at rest."""

    async def put(self, name: str, value: str) -> None:
        """Store (or replace) a secret."""
        ...

    async def get(self, name: str) -> str:
        """A secret's value. Unknown name: NotFoundError."""
        ...

    async def delete(self, name: str) -> None:
        """Delete a secret. Unknown name: NotFoundError."""
        ...

    async def exists(self, name: str) -> bool:
        """Whether a secret is stored under ``name``."""
        ...

    async def list(self) -> builtins.list[str]:
        """The names of all secrets, sorted (never their values)."""
        ...


class KvStore(Protocol):
    """Versioned, content-addressed, binary-safe key-value storage.

    A *ref* (any string; see :func:`session_ref` / :func:`agent_ref`) names a line of
    commits; each commit snapshots the whole key -> value mapping. Writes to a ref are
    atomic: concurrent writers never lose each other's updates.
    """

    async def get(self, ref: str, key: str) -> bytes | None:
        """The value of ``key`` at the head of ``ref`` (``None`` if absent)."""
        ...

    async def put(self, ref: str, key: str, value: bytes) -> str:
        """Set ``key``; returns the new head commit (the current one if nothing changed)."""
        ...

    async def delete(self, ref: str, key: str) -> str | None:
        """Remove ``key`` in a new commit; a missing key changes nothing and returns the
        current head (``None`` for a ref without commits)."""
        ...

    async def list(self, ref: str, prefix: str = "") -> builtins.list[str]:
        """The keys at the head of ``ref`` starting with ``prefix``, sorted."""
        ...

    async def head(self, ref: str) -> Commit | None:
        """The newest commit of ``ref``, or ``None``."""
        ...

    async def set_ref(self, ref: str, commit: str | None) -> None:
        """Point ``ref`` at an existing commit, or delete the ref (``None``)."""
        ...

    async def get_at(self, commit: str, key: str) -> bytes | None:
        """The value of ``key`` as of ``commit``."""
        ...

    async def keys_at(self, commit: str, prefix: str = "") -> builtins.list[str]:
        """The keys as of ``commit`` starting with ``prefix``, sorted."""
        ...

    async def history(self, ref: str, limit: int | None = None) -> builtins.list[Commit]:
        """The commits of ``ref``, newest first."""
        ...

    async def refs(self, prefix: str = "") -> dict[str, str]:
        """Every ref starting with ``prefix`` and the commit it points at."""
        ...

    async def copy_refs(self, src_prefix: str, dst_prefix: str) -> int:
        """Point ``dst_prefix + rest`` at the commit of every ref ``src_prefix + rest``;
        returns how many refs were copied."""
        ...

    async def fork_refs(self, session: str, branch: str, commits: Mapping[str, str]) -> None:
        """Set the session-scope refs of ``branch`` to exactly ``commits`` (agent ->
        commit): each agent in the mapping sees that commit, any other has no data."""
        ...


class VectorStore(Protocol):
    """Collections of vectors with metadata and text, per namespace (an agent).

    A collection is created by its first upsert, which fixes its dimension. Distances are
    reported in the backend's ``metric`` (``"cosine"``: 1 - cosine similarity, 0..2).
    """

    metric: str

    async def upsert(self, namespace: str, collection: str, items: Sequence[VectorItem]) -> int:
        """Insert or replace items by id; returns how many were written."""
        ...

    async def search(
        self,
        namespace: str,
        collection: str,
        vector: Sequence[float],
        k: int = 5,
        where: Mapping[str, Any] | None = None,
    ) -> builtins.list[VectorHit]:
        """The ``k`` items nearest to ``vector`` whose metadata has every ``where`` key
        equal to its value, nearest first (an unknown collection has no hits)."""
        ...

    async def delete(self, namespace: str, collection: str, ids: Sequence[str]) -> int:
        """Delete items by id; returns how many existed."""
        ...

    async def count(self, namespace: str, collection: str) -> int:
        """How many items the collection holds (0 if it does not exist)."""
        ...

    async def drop(self, namespace: str, collection: str) -> bool:
        """Delete a whole collection; returns whether it existed."""
        ...

    async def collections(self, namespace: str | None = None) -> builtins.list[CollectionInfo]:
        """The collections (of ``namespace`` if given), by namespace and name."""
        ...
