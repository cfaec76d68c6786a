"""Store records <-> protobuf messages, and the JSON that free-form dicts travel as.

Dicts go as JSON bytes (msgspec, like the stores' own canonical JSON) rather than
``google.protobuf.Struct``, whose numbers are all doubles: ``{"n": 1}`` must come back as
``{"n": 1}``, or a DAG node's content would no longer hash to its id.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec

from roost.protocol import InvalidRequestError
from roost.rpc._gen import common_pb2 as pb
from roost.stores import (
    AgentRecord,
    Branch,
    Capability,
    EngineName,
    ModelKind,
    ModelRecord,
    Node,
    NodeKind,
    Session,
    WorkerRecord,
)


def dumps_json(value: dict[str, Any], what: str) -> bytes:
    """``value`` as JSON bytes; something JSON cannot carry is the caller's error."""
    try:
        return msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidRequestError(f"{what} is not JSON-serializable: {exc}") from exc


def loads_json(data: bytes, what: str) -> dict[str, Any]:
    """The JSON object in ``data`` (empty bytes: ``{}``, protobuf's default)."""
    if not data:
        return {}
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{what} must be a JSON object, not {type(value).__name__}")
    return cast(dict[str, Any], value)


def opt(message: Any, field: str) -> Any:
    """A proto3 ``optional`` field's value, or ``None`` when it is unset."""
    return getattr(message, field) if message.HasField(field) else None


# --- registry records -------------------------------------------------------------------


def agent_to_pb(record: AgentRecord) -> pb.Agent:
    return pb.Agent(
        name=record.name,
        version=record.version,
        manifest_json=dumps_json(record.manifest, "the manifest"),
        path=record.path,
        deployed_at=record.deployed_at,
    )


def agent_from_pb(message: pb.Agent) -> AgentRecord:
    return AgentRecord(
        name=message.name,
        version=message.version,
        manifest=loads_json(message.manifest_json, "manifest_json"),
        path=message.path,
        deployed_at=message.deployed_at,
    )


def model_to_pb(record: ModelRecord) -> pb.Model:
    return pb.Model(
        name=record.name,
        kind=record.kind,
        engine=record.engine,
        target=record.target,
        base_url=record.base_url,
        api_key_secret=record.api_key_secret,
        dimension=record.dimension,
        options_json=dumps_json(record.options, "the model options"),
    )


def model_from_pb(message: pb.Model) -> ModelRecord:
    return ModelRecord(
        name=message.name,
        # validated where models are added (CLI, manifests); the wire carries plain strings
        kind=cast(ModelKind, message.kind),
        engine=cast(EngineName, message.engine),
        target=message.target,
        base_url=message.base_url,
        api_key_secret=message.api_key_secret,
        dimension=message.dimension,
        options=loads_json(message.options_json, "options_json"),
    )


def capability_to_pb(record: Capability) -> pb.Capability:
    return pb.Capability(
        service=record.service,
        details_json=dumps_json(record.details, "the capability details"),
        updated_at=record.updated_at,
    )


def capability_from_pb(message: pb.Capability) -> Capability:
    return Capability(
        service=message.service,
        details=loads_json(message.details_json, "details_json"),
        updated_at=message.updated_at,
    )


def worker_to_pb(record: WorkerRecord) -> pb.Worker:
    return pb.Worker(
        id=record.id,
        node=record.node,
        role=record.role,
        pid=record.pid,
        address=record.address,
        capabilities_json=dumps_json(record.capabilities, "the worker capabilities"),
        started_at=record.started_at,
        heartbeat_at=record.heartbeat_at,
    )


def worker_from_pb(message: pb.Worker) -> WorkerRecord:
    return WorkerRecord(
        id=message.id,
        node=message.node,
        role=message.role,
        pid=message.pid,
        address=message.address,
        capabilities=loads_json(message.capabilities_json, "capabilities_json"),
        started_at=message.started_at,
        heartbeat_at=message.heartbeat_at,
    )


# --- state records ----------------------------------------------------------------------


def session_to_pb(record: Session) -> pb.Session:
    return pb.Session(
        id=record.id,
        name=record.name,
        agent=record.agent,
        status=record.status,
        main_branch=record.main_branch,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def session_from_pb(message: pb.Session) -> Session:
    return Session(
        id=message.id,
        name=message.name,
        agent=message.agent,
        status=message.status,
        main_branch=message.main_branch,
        created_at=message.created_at,
        updated_at=message.updated_at,
    )


def branch_to_pb(record: Branch) -> pb.Branch:
    return pb.Branch(
        session=record.session,
        name=record.name,
        head=record.head,
        created_from=record.created_from,
        created_at=record.created_at,
    )


def branch_from_pb(message: pb.Branch) -> Branch:
    return Branch(
        session=message.session,
        name=message.name,
        head=opt(message, "head"),
        created_from=opt(message, "created_from"),
        created_at=message.created_at,
    )


def node_to_pb(record: Node) -> pb.Node:
    return pb.Node(
        id=record.id,
        session=record.session,
        branch=record.branch,
        parent=record.parent,
        kind=record.kind,
        content_json=dumps_json(record.content, "the node content"),
        created_at=record.created_at,
        seq=record.seq,
    )


def node_from_pb(message: pb.Node) -> Node:
    return Node(
        id=message.id,
        session=message.session,
        branch=message.branch,
        parent=opt(message, "parent"),
        kind=cast(NodeKind, message.kind),  # the store only stores known kinds
        content=loads_json(message.content_json, "content_json"),
        created_at=message.created_at,
        seq=message.seq,
    )
