"""The tools daemon's protocol: the frames of its one gRPC stream to a gateway, and the
requests that reach it over the bus.

A tools daemon runs on a user's machine and dials *out* to a gateway: one bidirectional
gRPC stream (method :data:`CONNECT_METHOD`), authenticated with a daemon-scoped access
token in the ``authorization`` metadata. Frames are JSON objects tagged by ``frame``:

* daemon -> gateway: :class:`Hello` (first frame), :class:`Reply`, :class:`Beat`,
  :class:`TerminalOutput`;
* gateway -> daemon: :class:`Welcome` (answer to the hello), :class:`Call`,
  :class:`Cancel`, :class:`Beat`, :class:`Goodbye`, :class:`TerminalInput`.

Workers and API servers never hold a daemon connection: they send a
:class:`DaemonRequest` on the bus to the subject of the user whose daemon they want
(``roost.protocol.subjects.tools_sync(user)`` and friends), and the gateway holding that
daemon forwards it as a :class:`Call` and answers with a :class:`DaemonReply`.

Every daemon operation is an ``op`` with a JSON ``body``: ``tool.call`` and ``tool.specs``
(the tools it offers, MCP servers' included), ``tool.cancel``, ``status`` and
``config.reload`` today (the gateway itself answers ``online``). One mechanism carries them
all, so a feature (the frontend's files, processes and terminals) is an op, not a new frame.
This module is framework-free (msgspec only): the daemon, which imports nothing of the
platform, shares it with the gateway.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from roost.protocol._errors import ProtocolError
from roost.protocol._messages import ErrorInfo, new_id, now

DAEMON_SERVICE = "roost.tools.v1.ToolsDaemon"
CONNECT_METHOD = f"/{DAEMON_SERVICE}/Connect"
"""The gRPC method of the daemon's stream (bytes in, bytes out: each message one frame)."""

HEARTBEAT_S = 30.0
"""How often the gateway beats on a daemon stream (the daemon answers each beat)."""
SILENCE_LIMIT_S = 120.0
"""A daemon silent this long is marked disconnected and its stream closed."""

GoodbyeKind = Literal["replaced", "revoked", "silent", "shutdown", "refused"]


class _Frame(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="frame"):
    pass


# --- daemon -> gateway -------------------------------------------------------------------


class Hello(_Frame, tag="hello", frozen=True):
    """The daemon's first frame: who and where it is, and what it offers."""

    daemon_id: str
    hostname: str = ""
    pid: int = 0
    version: str = ""
    platform: str = ""
    tools: list[dict[str, Any]] = []
    """The tools it offers (``ToolSpec`` shapes: name, description, parameters)."""
    roots: list[str] = []


class Reply(_Frame, tag="reply", frozen=True):
    """The answer to the :class:`Call` whose id is ``id``."""

    id: str
    ok: bool = True
    body: dict[str, Any] = {}
    error: ErrorInfo | None = None


class TerminalOutput(_Frame, tag="term_out", frozen=True):
    """Bytes a terminal's PTY wrote; ``closed`` (with ``exit_code``) when it ended."""

    terminal: str
    data: bytes = b""
    closed: bool = False
    exit_code: int | None = None


# --- both ways ---------------------------------------------------------------------------


class Beat(_Frame, tag="beat", frozen=True):
    """A heartbeat: the gateway sends one every ``heartbeat_s``; the daemon echoes it."""

    at: float = msgspec.field(default_factory=now)


# --- gateway -> daemon -------------------------------------------------------------------


class Welcome(_Frame, tag="welcome", frozen=True):
    """The gateway accepted the stream: this connection's id, and whose daemon it is."""

    connection: str
    gateway: str
    user: str
    heartbeat_s: float = HEARTBEAT_S


class Call(_Frame, tag="call", frozen=True):
    """Run daemon operation ``op`` on ``body``; answer with a :class:`Reply` of the same id.

    The id is the caller's: a call repeated with the same id (after a reconnect) is answered
    from the daemon's memory of it instead of running again."""

    id: str
    op: str
    body: dict[str, Any] = {}
    timeout_s: float = 60.0


class Cancel(_Frame, tag="cancel", frozen=True):
    """Stop the call ``id`` if it still runs (its process is killed)."""

    id: str


class Goodbye(_Frame, tag="goodbye", frozen=True):
    """The gateway closes the stream, and why. ``reconnect`` false means: do not come back
    (the token was revoked, or another daemon of this user took over)."""

    kind: GoodbyeKind
    reason: str
    reconnect: bool = True


class TerminalInput(_Frame, tag="term_in", frozen=True):
    """Keystrokes for a terminal, a new size for it, or ``close``."""

    terminal: str
    data: bytes = b""
    rows: int = 0
    cols: int = 0
    close: bool = False


DaemonFrame = Hello | Reply | Beat | TerminalOutput
GatewayFrame = Welcome | Call | Cancel | Beat | Goodbye | TerminalInput

# --- over the bus ------------------------------------------------------------------------


class DaemonRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """A request for ``user``'s tools daemon, sent on that user's subject."""

    user: str
    op: str
    body: dict[str, Any] = {}
    timeout_s: float = 60.0
    id: str = msgspec.field(default_factory=new_id)
    """Stable across retries of one call, so the daemon runs it at most once."""
    reply_to: str = ""
    """For fire-and-forget requests: where the gateway publishes the :class:`DaemonReply`."""
    grant: str = ""
    """On the tools subjects: the run grant of the run making the call (``roost.auth``).
    Gateways with grants on serve a request there only if its grant's owner is ``user``."""


RUN_OPS = frozenset({"tool.call", "tool.specs", "tool.cancel", "online", "config.reload"})
"""The operations of the tools subjects (``tools_sync``, ``tools_request``): what a run does,
with its grant (and a config reload, harmless: the daemon re-reads its own files).
Everything else (status, files, processes, terminals: the platform's own requests for a
user's browser) goes on ``daemon_command``, which bus permissions keep to platform
processes."""


class DaemonReply(msgspec.Struct, frozen=True, omit_defaults=True):
    """The answer to a :class:`DaemonRequest`, from the gateway that holds the daemon."""

    id: str
    ok: bool = True
    body: dict[str, Any] = {}
    error: ErrorInfo | None = None
    gateway: str = ""
    connection: str = ""
    """The daemon connection that answered (it changes when the daemon reconnects)."""


_encoder = msgspec.json.Encoder()


class DaemonPresence(msgspec.Struct, frozen=True, omit_defaults=True):
    """A gateway accepted a daemon of ``user`` (published on ``daemon_presence(user)`` at
    once): a gateway holding another connection of that user lets it go. ``connected_at``
    is for logs only; no decision rests on clocks of different hosts."""

    user: str
    gateway: str
    connection: str
    connected_at: float = 0.0


_daemon_frames = msgspec.json.Decoder(DaemonFrame)
_gateway_frames = msgspec.json.Decoder(GatewayFrame)
_requests = msgspec.json.Decoder(DaemonRequest)
_replies = msgspec.json.Decoder(DaemonReply)
_presences = msgspec.json.Decoder(DaemonPresence)


def encode_frame(
    frame: DaemonFrame | GatewayFrame | DaemonRequest | DaemonReply | DaemonPresence,
) -> bytes:
    """A frame (or bus request/reply) as JSON bytes."""
    return _encoder.encode(frame)


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes, what: str) -> Any:
    try:
        return decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolError(f"invalid {what}: {exc}") from None


def decode_daemon_frame(data: bytes) -> DaemonFrame:
    """A frame the daemon sent (:class:`~roost.protocol.ProtocolError` if it is none)."""
    frame: DaemonFrame = _decode(_daemon_frames, data, "daemon frame")
    return frame


def decode_gateway_frame(data: bytes) -> GatewayFrame:
    """A frame the gateway sent."""
    frame: GatewayFrame = _decode(_gateway_frames, data, "gateway frame")
    return frame


def decode_daemon_request(data: bytes) -> DaemonRequest:
    request: DaemonRequest = _decode(_requests, data, "daemon request")
    return request


def decode_daemon_reply(data: bytes) -> DaemonReply:
    reply: DaemonReply = _decode(_replies, data, "daemon reply")
    return reply


def decode_daemon_presence(data: bytes) -> DaemonPresence:
    presence: DaemonPresence = _decode(_presences, data, "daemon presence")
    return presence


__all__ = [
    "CONNECT_METHOD",
    "DAEMON_SERVICE",
    "HEARTBEAT_S",
    "RUN_OPS",
    "SILENCE_LIMIT_S",
    "Beat",
    "Call",
    "Cancel",
    "DaemonFrame",
    "DaemonPresence",
    "DaemonReply",
    "DaemonRequest",
    "GatewayFrame",
    "Goodbye",
    "GoodbyeKind",
    "Hello",
    "Reply",
    "TerminalInput",
    "TerminalOutput",
    "Welcome",
    "decode_daemon_frame",
    "decode_daemon_presence",
    "decode_daemon_reply",
    "decode_daemon_request",
    "decode_gateway_frame",
    "encode_frame",
]
