"""The frames between an :class:`~roost.engines.IsolatedEngine` and its engine host process.

Each frame is a 4-byte big-endian length and a msgpack body (msgspec): a tagged struct whose
payload fields are roost's own wire types (``ChatRequest``, ``ChatResult``, ``EmbedResult``,
``ErrorInfo``) and the ``ModelRecord`` dataclass, so nothing is converted by hand and nothing
is pickled. Calls are multiplexed by ``id``: the host answers each with any number of
``Token`` / ``Loading`` / ``Loaded`` frames and then exactly one ``Done`` or ``Failed``.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Literal

import msgspec

from roost.protocol import ChatRequest, ChatResult, EmbedResult, ErrorInfo
from roost.stores import ModelRecord

Op = Literal["chat", "embed", "load", "list_models"]

MAX_FRAME = 256 * 1024 * 1024
"""Largest frame either side accepts (a length beyond it means a corrupted channel)."""

_LENGTH = struct.Struct(">I")


# --- parent -> host -----------------------------------------------------------------------


class Call(msgspec.Struct, tag="call", frozen=True, omit_defaults=True):
    """Start call ``id``: ``op`` on ``model`` (``chat`` with ``request``, ``embed`` with
    ``inputs``); ``stream`` asks for ``Token`` frames while a chat generates."""

    id: int
    op: Op
    model: ModelRecord | None = None
    request: ChatRequest | None = None
    inputs: list[str] = []
    stream: bool = False


class Cancel(msgspec.Struct, tag="cancel", frozen=True):
    """The caller of ``id`` is gone: stop working on it (no answer is expected)."""

    id: int


# --- host -> parent -----------------------------------------------------------------------


class Ready(msgspec.Struct, tag="ready", frozen=True):
    """The host runs ``engine`` and takes calls."""

    pid: int
    engine: str


class Token(msgspec.Struct, tag="token", frozen=True):
    """A piece of the streamed answer of call ``id``."""

    id: int
    text: str


class Loading(msgspec.Struct, tag="loading", frozen=True):
    """Call ``id`` is loading its model (a crash now is a crash while loading)."""

    id: int


class Loaded(msgspec.Struct, tag="loaded", frozen=True):
    """Call ``id`` has its model loaded."""

    id: int


class Done(msgspec.Struct, tag="done", frozen=True, omit_defaults=True):
    """Call ``id`` succeeded; the field of its op is set."""

    id: int
    chat: ChatResult | None = None
    embed: EmbedResult | None = None
    models: list[str] | None = None
    dimension: int | None = None


class Failed(msgspec.Struct, tag="failed", frozen=True):
    """Call ``id`` raised ``error`` (a roost error, rebuilt with ``RoostError.from_info``)."""

    id: int
    error: ErrorInfo


ToHost = Call | Cancel
ToParent = Ready | Token | Loading | Loaded | Done | Failed

_encoder = msgspec.msgpack.Encoder()


def encode(frame: ToHost | ToParent) -> bytes:
    """The frame's bytes, length prefix included."""
    body = _encoder.encode(frame)
    return _LENGTH.pack(len(body)) + body


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (blocking; raises ``OSError`` once the reader is gone)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame's body, or ``None`` at end of stream (the other side closed or died)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is over the {MAX_FRAME}-byte limit")
    body = stream.read(size)
    if len(body) < size:
        return None
    return body


to_host_decoder: msgspec.msgpack.Decoder[ToHost] = msgspec.msgpack.Decoder(ToHost)
to_parent_decoder: msgspec.msgpack.Decoder[ToParent] = msgspec.msgpack.Decoder(ToParent)
