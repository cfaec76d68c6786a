"""Typed bodies of the platform services' requests and responses.

A :class:`~roost.protocol.RequestMessage` carries ``service``, ``op`` and a plain ``body``;
these structs are the schema of each body (see :func:`roost.protocol.to_body` /
:func:`roost.protocol.from_body`).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from roost.protocol._messages import Usage

# --- inference (service "infer", op "chat") ---------------------------------------------


class ToolCall(msgspec.Struct, frozen=True, omit_defaults=True):
    """A model's request to call tool ``name`` with JSON ``arguments``."""

    id: str
    name: str
    arguments: dict[str, Any] = {}


class ChatMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One message of a chat, in the OpenAI shape."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = []
    tool_call_id: str = ""
    name: str = ""


class ToolSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    """A tool offered to a model: name, description and JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


class ChatRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    model: str
    messages: list[ChatMessage]
    tools: list[ToolSpec] = []
    temperature: float | None = None
    max_tokens: int | None = None
    stream: bool = False  # stream tokens as events on the session's event subject


class ChatResult(msgspec.Struct, frozen=True, omit_defaults=True):
    message: ChatMessage
    model: str = ""
    finish_reason: str = ""
    usage: Usage = Usage()


# --- embedding (service "embed", op "embed") --------------------------------------------


class EmbedRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    model: str
    inputs: list[str]


class EmbedResult(msgspec.Struct, frozen=True, omit_defaults=True):
    vectors: list[list[float]]
    model: str = ""
    dimension: int = 0
    usage: Usage = Usage()


# --- object storage (service "kv", ops get/put/list/delete) ------------------------------

KvScope = Literal["session", "agent"]


class KvGet(msgspec.Struct, frozen=True, omit_defaults=True):
    key: str
    scope: KvScope = "session"


class KvPut(msgspec.Struct, frozen=True, omit_defaults=True):
    key: str
    value: bytes
    scope: KvScope = "session"


class KvDelete(msgspec.Struct, frozen=True, omit_defaults=True):
    key: str
    scope: KvScope = "session"


class KvList(msgspec.Struct, frozen=True, omit_defaults=True):
    prefix: str = ""
    scope: KvScope = "session"


class KvValue(msgspec.Struct, frozen=True, omit_defaults=True):
    """Result of get (``found`` false when absent), put and delete (``commit`` is the new KV
    commit), and list (``keys``)."""

    found: bool = False
    value: bytes | None = None
    commit: str = ""
    keys: list[str] = []


# --- vector storage (service "vec", ops upsert/search/delete) ----------------------------


class VectorItem(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    vector: list[float]
    metadata: dict[str, Any] = {}
    text: str = ""


class VecUpsert(msgspec.Struct, frozen=True, omit_defaults=True):
    collection: str
    items: list[VectorItem]


class VecSearch(msgspec.Struct, frozen=True, omit_defaults=True):
    collection: str
    vector: list[float]
    k: int = 5
    where: dict[str, Any] = {}  # metadata equality filter


class VecDelete(msgspec.Struct, frozen=True, omit_defaults=True):
    collection: str
    ids: list[str]


class VectorHit(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    distance: float
    metadata: dict[str, Any] = {}
    text: str = ""


class VecResult(msgspec.Struct, frozen=True, omit_defaults=True):
    hits: list[VectorHit] = []
    count: int = 0


# --- tools (service "tool", op "call") ---------------------------------------------------


class ToolRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    arguments: dict[str, Any] = {}


class ToolResult(msgspec.Struct, frozen=True, omit_defaults=True):
    output: Any = None
    is_error: bool = False


# --- agents (service "agent", op "call") -------------------------------------------------


class AgentCall(msgspec.Struct, frozen=True, omit_defaults=True):
    agent: str
    input: Any = None
    timeout_s: float = 300.0
    depth: int = 1  # how deep in a chain of agent calls this call is (guards against loops)


class AgentCallResult(msgspec.Struct, frozen=True, omit_defaults=True):
    output: Any = None
    session: str = ""
    usage: Usage = Usage()
