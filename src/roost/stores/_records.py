"""Plain records that stores return and services consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from roost.protocol import EngineName

ModelKind = Literal["chat", "embedding"]


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A model known to the registry.

    ``target`` is what the engine calls the model: a GGUF path or package model for
    ``llama-cpp``, a model directory for ``sentence-transformers``, the model name for
    ``ollama`` / ``openai``. ``api_key_secret`` names a secret in the secret store.
    """

    name: str
    kind: ModelKind
    engine: EngineName
    target: str
    base_url: str = ""
    api_key_secret: str = ""
    dimension: int = 0  # embedding models: vector size (0 = ask the engine)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AvailableModel:
    """A model an engine can serve (``roost model available``): ``where`` is ``embedded``
    or the engine's base URL."""

    engine: str
    model: str
    where: str


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """A deployed agent: its validated manifest (as a dict) and where its files live."""

    name: str
    version: int
    manifest: dict[str, Any]
    path: str
    deployed_at: float


NodeKind = Literal["invoke", "request", "response", "complete", "fork", "promote", "event"]
NODE_KINDS: frozenset[str] = frozenset(
    ("invoke", "request", "response", "complete", "fork", "promote", "event")
)


@dataclass(frozen=True, slots=True)
class Capability:
    """What one service (or engine) offers here, as last reported by whoever serves it."""

    service: str
    details: dict[str, Any]
    updated_at: float


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A live (or lately live) worker process of a deployment, as registered with the
    registry. ``capabilities`` says what it serves: ``{"services": ["infer"], "engines":
    ["llama-cpp"], ...}``. A worker whose ``heartbeat_at`` is older than the registry's TTL
    counts as dead."""

    id: str
    node: str
    role: str
    pid: int
    address: str
    capabilities: dict[str, Any]
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True, slots=True)
class Session:
    """A conversation of one agent: a DAG of recorded messages with named branches.

    ``id`` is opaque and stable; ``name`` is a readable unique alias (``brave-otter-4821``).
    Either identifies the session wherever the state store takes a session.
    ``updated_at`` is when a run last began or ended on it, or it was forked or promoted
    (the requests, responses and events within a run do not move it).
    """

    id: str
    name: str
    agent: str
    status: str
    main_branch: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Branch:
    """A named line of a session: ``head`` is its newest node (``None`` while empty);
    ``created_from`` is the node it was forked from (``None`` for the first branch)."""

    session: str
    name: str
    head: str | None
    created_from: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Node:
    """One recorded message of a session DAG.

    ``id`` is the sha256 (hex) of the canonical JSON of ``[session, parent, kind, content]``,
    so the same content under another parent or session is another node. ``branch`` is the
    branch the node was first appended to; ``seq`` increases with every node stored.
    """

    id: str
    session: str
    branch: str
    parent: str | None
    kind: NodeKind
    content: dict[str, Any]
    created_at: float
    seq: int


@dataclass(frozen=True, slots=True)
class Commit:
    """A version of a KV ref: the whole key -> blob mapping (``tree``) after one change.

    ``id`` is the sha256 (hex) of the canonical JSON of tree, parent and message.
    """

    id: str
    parent: str | None
    tree: str
    message: str
    created_at: float


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """A vector collection: its dimension (fixed by the first vectors), distance metric and
    number of items."""

    namespace: str
    name: str
    dimension: int
    metric: str
    count: int
