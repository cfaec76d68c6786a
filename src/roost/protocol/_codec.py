"""Encoding and decoding of protocol messages (JSON via msgspec).

JSON keeps the bus inspectable with ordinary NATS tools; msgspec keeps it fast. Bytes inside
bodies travel base64-encoded, so payloads are binary-safe.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from roost.protocol._errors import InvalidRequestError, ProtocolError
from roost.protocol._messages import AnyMessage, Message

M = TypeVar("M", bound=Message)
T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_any_decoder: msgspec.json.Decoder[AnyMessage] = msgspec.json.Decoder(AnyMessage)  # type: ignore[arg-type]
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode(message: Message) -> bytes:
    """Serialize a protocol message to bytes."""
    return _encoder.encode(message)


def decode(data: bytes | bytearray | memoryview, type: type[M] | None = None) -> M:
    """Parse ``data`` into a protocol message.

    With ``type`` the message must be of that kind. Raises :class:`ProtocolError` naming the
    problem (bad JSON, unknown kind, missing or mistyped field) for anything else.
    """
    try:
        if type is None:
            return _any_decoder.decode(data)  # type: ignore[return-value]
        decoder = _decoders.get(type)
        if decoder is None:
            decoder = _decoders[type] = msgspec.json.Decoder(type)
        result: M = decoder.decode(data)
        return result
    except msgspec.ValidationError as exc:
        kind = type.__name__ if type is not None else "message"
        raise ProtocolError(f"invalid {kind}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"undecodable message: {exc}") from exc


def to_body(value: Any) -> dict[str, Any]:
    """Turn a typed payload struct into the plain ``body`` dict of a request or response."""
    body = msgspec.to_builtins(value)
    if not isinstance(body, dict):
        raise TypeError(f"a message body must be an object, got {value!r}")
    return body


def from_body(body: dict[str, Any], type: type[T]) -> T:
    """Validate a plain ``body`` dict into a typed payload (clear error if it does not fit)."""
    try:
        return msgspec.convert(body, type)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"invalid {getattr(type, '__name__', type)}: {exc}") from exc


def dumps(value: Any) -> bytes:
    """JSON-encode any builtin or msgspec value (used for storage and hashing)."""
    return _encoder.encode(value)


def loads(data: bytes | str) -> Any:
    """JSON-decode to builtins."""
    return msgspec.json.decode(data)
