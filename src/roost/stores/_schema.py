"""The relational schema of every store (SQLAlchemy 2 typed declarative models).

The schema is portable (SQLite and Postgres): plain types, no dialect-specific SQL. It is
created and evolved only by the Alembic migrations in ``roost/stores/migrations``; a test
checks that the migrations produce exactly these tables. Timestamps are seconds since the
epoch (``DOUBLE``), like the timestamps of protocol messages.

Vector embeddings are not here: the vector backend stores them in its engine's own
structure (sqlite-vec ``vec0`` tables per collection, pgvector columns later) and keeps the
portable part (collections, ids, metadata, text) in ``vec_collections`` / ``vec_items``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

HASH = String(64)  # sha256, hex
# Tables a backend creates at run time (one per vector collection) start with this; they
# are not part of the migrated schema and migrations leave them alone.
BACKEND_TABLE_PREFIX = "vec_embeddings_"
NAME = String(200)

# Stable constraint names, so that later migrations can alter them on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the roost schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, float: Double, bytes: LargeBinary}


# --- registry ------------------------------------------------------------------------


class AgentRow(Base):
    """One deployed version of an agent."""

    __tablename__ = "agents"

    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    manifest: Mapped[dict[str, Any]]
    path: Mapped[str] = mapped_column(Text)
    deployed_at: Mapped[float]


class ModelRow(Base):
    """A registered model (see :class:`roost.stores.ModelRecord`)."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    engine: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    base_url: Mapped[str] = mapped_column(Text)
    api_key_secret: Mapped[str] = mapped_column(NAME)
    dimension: Mapped[int] = mapped_column(Integer)
    options: Mapped[dict[str, Any]]
    updated_at: Mapped[float]


class CapabilityRow(Base):
    """What a service or engine offers here (refreshed by whoever serves it)."""

    __tablename__ = "capabilities"

    service: Mapped[str] = mapped_column(NAME, primary_key=True)
    details: Mapped[dict[str, Any]]
    updated_at: Mapped[float]


class AgentBundleRow(Base):
    """The files of one deployed agent version (a gzipped tar), for workers on any node."""

    __tablename__ = "agent_bundles"

    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(HASH)
    data: Mapped[bytes]
    size: Mapped[int] = mapped_column(Integer)


class WorkerRow(Base):
    """A registered worker process (see :class:`roost.stores.WorkerRecord`)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(NAME, primary_key=True)
    node: Mapped[str] = mapped_column(NAME)
    role: Mapped[str] = mapped_column(String(64))
    pid: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(Text)
    capabilities: Mapped[dict[str, Any]]
    started_at: Mapped[float]
    heartbeat_at: Mapped[float] = mapped_column(index=True)


# --- state: sessions, branches, DAG nodes --------------------------------------------


class SessionRow(Base):
    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_agent_created_at", "agent", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    agent: Mapped[str] = mapped_column(NAME)
    status: Mapped[str] = mapped_column(String(32))
    main_branch: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[float] = mapped_column(index=True)
    updated_at: Mapped[float]


class BranchRow(Base):
    __tablename__ = "branches"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    head: Mapped[str | None] = mapped_column(HASH)
    created_from: Mapped[str | None] = mapped_column(HASH)
    created_at: Mapped[float]


class NodeRow(Base):
    """A DAG node. ``seq`` (the surrogate key) gives a total order of insertion: a parent
    always has a smaller ``seq`` than its children."""

    __tablename__ = "nodes"
    __table_args__ = (
        Index("ix_nodes_session_seq", "session_id", "seq"),
        Index("ix_nodes_session_message", "session_id", "message_id"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(HASH, unique=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    branch: Mapped[str] = mapped_column(NAME)
    parent: Mapped[str | None] = mapped_column(HASH)
    kind: Mapped[str] = mapped_column(String(16))
    content: Mapped[dict[str, Any]]
    created_at: Mapped[float]
    message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    """The recorded protocol message's id: recording a message twice (a retried durable
    step) finds the first node instead of appending another."""


# --- versioned KV --------------------------------------------------------------------


class KvBlobRow(Base):
    """Content-addressed bytes: values, and trees (canonical JSON key -> blob hash)."""

    __tablename__ = "kv_blobs"

    hash: Mapped[str] = mapped_column(HASH, primary_key=True)
    data: Mapped[bytes]
    size: Mapped[int] = mapped_column(Integer)


class KvCommitRow(Base):
    __tablename__ = "kv_commits"

    id: Mapped[str] = mapped_column(HASH, primary_key=True)
    parent: Mapped[str | None] = mapped_column(HASH)
    tree: Mapped[str] = mapped_column(ForeignKey("kv_blobs.hash"))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float]


class KvRefRow(Base):
    __tablename__ = "kv_refs"

    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    commit: Mapped[str] = mapped_column(ForeignKey("kv_commits.id"))
    updated_at: Mapped[float]


# --- secrets -------------------------------------------------------------------------


class SecretRow(Base):
    """A secret, Fernet-encrypted (the token carries its own timestamp and MAC)."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    token: Mapped[bytes]
    created_at: Mapped[float]
    updated_at: Mapped[float]


# --- vectors (portable part) ---------------------------------------------------------


class VecCollectionRow(Base):
    __tablename__ = "vec_collections"
    __table_args__ = (UniqueConstraint("namespace", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(NAME)
    name: Mapped[str] = mapped_column(NAME)
    dimension: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float]


class VecItemRow(Base):
    """An item of a collection; ``key`` is the row id of its embedding in the backend."""

    __tablename__ = "vec_items"
    __table_args__ = (UniqueConstraint("collection_id", "item_id"),)

    key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("vec_collections.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(String(512))
    item_metadata: Mapped[dict[str, Any]] = mapped_column("metadata")
    text: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float]


# --- principals: users, access tokens, the audit log ---------------------------------


class UserRow(Base):
    """A user or a service account; ``tenant`` is whose data it sees."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(NAME, primary_key=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))  # admin | member
    kind: Mapped[str] = mapped_column(String(16))  # user | service
    tenant: Mapped[str] = mapped_column(NAME, index=True)
    subject: Mapped[str | None] = mapped_column(String(512), unique=True)  # a JWT's iss+sub
    disabled: Mapped[bool]
    created_at: Mapped[float]


class AccessTokenRow(Base):
    """A personal access token: only its SHA-256 and a display prefix are kept."""

    __tablename__ = "access_tokens"

    id: Mapped[str] = mapped_column(NAME, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(NAME)
    prefix: Mapped[str] = mapped_column(String(32))
    hash: Mapped[str] = mapped_column(HASH, unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[float]
    expires_at: Mapped[float]
    last_used_at: Mapped[float | None]
    revoked_at: Mapped[float | None]


class AuditRow(Base):
    """One security-relevant event: a login, a token made or revoked, a deploy, a secret
    written, a failed authentication."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(index=True)
    tenant: Mapped[str] = mapped_column(NAME, index=True)
    actor: Mapped[str] = mapped_column(NAME)  # a user id, or "-" when unknown
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512))
    ok: Mapped[bool]
    detail: Mapped[dict[str, Any]]
