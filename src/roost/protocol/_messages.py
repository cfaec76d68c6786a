"""Wire messages of the roost protocol, version 1.

Every message shares an envelope (id, session, branch, correlation id, timestamp, trace
context). Messages are ``msgspec`` structs tagged by ``kind`` so that one decoder accepts any
of them and rejects anything else with a precise error.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import msgspec

PROTOCOL_VERSION = 1

ServiceName = Literal["infer", "embed", "kv", "vec", "tool", "agent"]
EventType = Literal["progress", "token", "log", "status", "step", "question", "answer"]


def new_id() -> str:
    """A fresh message id (random UUID, hex)."""
    return uuid.uuid4().hex


def now() -> float:
    """Wall-clock time in seconds since the epoch, as carried in messages."""
    return time.time()


class TraceContext(msgspec.Struct, frozen=True, omit_defaults=True):
    """W3C trace context carried with every message (``traceparent`` / ``tracestate``)."""

    traceparent: str = ""
    tracestate: str = ""


class ErrorInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A failure carried in a response or completion.

    ``code`` is one of the stable codes in :mod:`roost.protocol.errors`; ``retryable`` tells
    callers (and the durable executor) whether repeating the call may succeed.
    """

    code: str
    message: str
    retryable: bool = False
    details: dict[str, Any] = {}


class Message(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, tag_field="kind"):
    """The envelope shared by every protocol message."""

    id: str = msgspec.field(default_factory=new_id)
    session: str = ""
    branch: str = "main"
    correlation_id: str = ""
    timestamp: float = msgspec.field(default_factory=now)
    trace: TraceContext = TraceContext()
    version: int = PROTOCOL_VERSION


class InvokeMessage(Message, tag="invoke", frozen=True):
    """Harness -> runtime: run ``agent`` on ``input`` within ``session``/``branch``."""

    agent: str
    agent_version: int = 0
    """The deployed version of ``agent`` to run (0: the latest when the run begins). The
    harness pins the version it checked, so a deploy racing the start cannot swap it."""
    input: Any = None
    timeout_s: float = 300.0
    caller: str = ""  # the calling agent, for agent-to-agent calls
    owner: str = ""
    """The user whose run this is (the API server sets it from the authenticated caller;
    empty for a local run): daemon tools go to this user's tools daemon."""
    metadata: dict[str, Any] = {}


class RequestMessage(Message, tag="request", frozen=True):
    """Runtime -> service: one typed call (``service``.``op`` with ``body``)."""

    service: ServiceName
    op: str
    body: dict[str, Any] = {}
    agent: str = ""
    agent_version: int = 0
    """The deployed version of ``agent`` the run uses (0: the latest), so services that
    depend on the agent's files (tools) serve the version the run started with."""
    timeout_s: float = 30.0
    owner: str = ""
    """The run's owner (:attr:`InvokeMessage.owner`), covered by the grant."""
    grant: str = ""
    """The run grant the runtime stamped: proof that ``agent``, ``session`` and ``branch``
    are the run's own (:mod:`roost.auth`); checked by services when grants are on."""


class ResponseMessage(Message, tag="response", frozen=True):
    """Service -> runtime: the answer to the request whose id is ``correlation_id``."""

    ok: bool = True
    body: dict[str, Any] = {}
    error: ErrorInfo | None = None
    duration_ms: float = 0.0


class Usage(msgspec.Struct, frozen=True, omit_defaults=True):
    """Token usage of a model call or a whole run."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


class CompleteMessage(Message, tag="complete", frozen=True):
    """Runtime -> harness: the run whose invoke id is ``correlation_id`` has ended."""

    agent: str = ""
    ok: bool = True
    output: Any = None
    error: ErrorInfo | None = None
    usage: Usage = Usage()
    duration_ms: float = 0.0


class ForkMessage(Message, tag="fork", frozen=True):
    """Create ``new_branch`` in ``session`` whose head is the node ``from_node``."""

    from_node: str
    new_branch: str = ""


class PromoteMessage(Message, tag="promote", frozen=True):
    """Make ``branch`` the session's main line (the branch new runs continue by default)."""


class EventMessage(Message, tag="event", frozen=True):
    """A real-time event from a run: progress, streamed tokens, log lines, status changes."""

    type: EventType
    agent: str = ""
    data: dict[str, Any] = {}


AnyMessage = (
    InvokeMessage
    | RequestMessage
    | ResponseMessage
    | CompleteMessage
    | ForkMessage
    | PromoteMessage
    | EventMessage
)
