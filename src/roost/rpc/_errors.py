"""Roost errors across gRPC, both ways.

A servicer turns a :class:`~roost.protocol.RoostError` into a gRPC status (the family, for
generic gRPC tooling) plus trailing metadata carrying the exact roost code and details, so a
roost client rebuilds the very exception the store raised (a ``NotFoundError`` with its
message). A status without that metadata comes from gRPC itself: the client's deadline passed,
the server is unreachable, or the peer is not a roost service; those become errors that name
the service and its address.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn

import grpc
import grpc.aio
import msgspec

from roost.protocol import (
    ErrorCode,
    ErrorInfo,
    InvalidRequestError,
    NotFoundError,
    RoostError,
    ServiceTimeoutError,
    ServiceUnavailableError,
)

log = logging.getLogger("roost.rpc")

ERROR_CODE_KEY = "roost-error-code"
"""Trailing metadata key of the roost error code (``not_found``, ``timeout``, ...)."""
ERROR_DETAILS_KEY = "roost-error-details-bin"
"""Trailing metadata key of the error's details, as JSON (binary metadata: ``-bin``)."""

_S = grpc.StatusCode
STATUS_BY_CODE: Mapping[str, grpc.StatusCode] = {
    ErrorCode.INVALID_MESSAGE: _S.INVALID_ARGUMENT,
    ErrorCode.INVALID_REQUEST: _S.INVALID_ARGUMENT,
    ErrorCode.INVALID_CONFIG: _S.INVALID_ARGUMENT,
    ErrorCode.INVALID_MANIFEST: _S.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: _S.NOT_FOUND,
    ErrorCode.UNKNOWN_OP: _S.UNIMPLEMENTED,
    ErrorCode.AUTH: _S.PERMISSION_DENIED,
    ErrorCode.TIMEOUT: _S.DEADLINE_EXCEEDED,
    ErrorCode.NO_RESPONDERS: _S.UNAVAILABLE,
    ErrorCode.UNAVAILABLE: _S.UNAVAILABLE,
    ErrorCode.RATE_LIMITED: _S.RESOURCE_EXHAUSTED,
    ErrorCode.UPSTREAM: _S.UNAVAILABLE,
    ErrorCode.AGENT_FAILED: _S.ABORTED,
    ErrorCode.TOOL_FAILED: _S.ABORTED,
    ErrorCode.ENGINE_MISSING: _S.FAILED_PRECONDITION,
    ErrorCode.ENGINE_START_FAILED: _S.FAILED_PRECONDITION,
    ErrorCode.ENGINE_CRASH_LOOP: _S.FAILED_PRECONDITION,
    ErrorCode.PAYLOAD_TOO_LARGE: _S.RESOURCE_EXHAUSTED,
    ErrorCode.CANCELLED: _S.CANCELLED,
    ErrorCode.INTERNAL: _S.INTERNAL,
    ErrorCode.UNEXPECTED: _S.INTERNAL,
}
"""The gRPC status each :class:`~roost.protocol.ErrorCode` travels as (every member has one;
a code unknown to this roost travels as ``INTERNAL``). The status is for generic gRPC
tooling only: a roost client rebuilds the error from the exact code in the metadata."""

# A status that arrived without a roost code (a non-roost peer, or gRPC's own failures other
# than deadline and transport, which get their own messages): the closest roost code.
_CODE_BY_STATUS: Mapping[grpc.StatusCode, ErrorCode] = {
    _S.INVALID_ARGUMENT: ErrorCode.INVALID_REQUEST,
    _S.FAILED_PRECONDITION: ErrorCode.INVALID_REQUEST,
    _S.OUT_OF_RANGE: ErrorCode.INVALID_REQUEST,
    _S.ALREADY_EXISTS: ErrorCode.INVALID_REQUEST,
    _S.NOT_FOUND: ErrorCode.NOT_FOUND,
    _S.RESOURCE_EXHAUSTED: ErrorCode.RATE_LIMITED,
    _S.PERMISSION_DENIED: ErrorCode.AUTH,
    _S.UNAUTHENTICATED: ErrorCode.AUTH,
    _S.ABORTED: ErrorCode.AGENT_FAILED,
}


def status_for(error: RoostError) -> grpc.StatusCode:
    """The gRPC status a roost error travels as."""
    return STATUS_BY_CODE.get(error.code, grpc.StatusCode.INTERNAL)


def error_metadata(error: RoostError) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata that lets a client rebuild ``error`` exactly."""
    metadata: list[tuple[str, str | bytes]] = [(ERROR_CODE_KEY, str(error.code))]
    if error.details:
        try:
            metadata.append((ERROR_DETAILS_KEY, msgspec.json.encode(error.details)))
        except (TypeError, msgspec.EncodeError):
            # details are a courtesy; a value JSON cannot carry must not hide the error itself
            log.debug("dropping details of %s that are not JSON: %r", error.code, error.details)
    return tuple(metadata)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: RoostError) -> NoReturn:
    """End the current call with ``error`` (its status, message, code and details)."""
    await context.abort(status_for(error), error.message, trailing_metadata=error_metadata(error))


def error_from_rpc(
    exc: grpc.RpcError,
    *,
    target: str,
    method: str,
    timeout_s: float,
    types: Mapping[str, type[RoostError]] | None = None,
) -> RoostError:
    """The roost error for a failed call of ``method`` (``Registry.GetAgent``) to ``target``
    (``registry at 127.0.0.1:9090``). ``types`` adds exception types for codes that
    :meth:`RoostError.from_info` does not know (``auth`` -> ``SecretKeyError``)."""
    status, details, trailing = _parts(exc)
    code, extra = _roost_code(trailing)
    if code is not None:  # raised on purpose by the service: rebuild the same exception
        cls = (types or {}).get(code)
        if cls is not None:
            return cls(details, code=code, **extra)
        return RoostError.from_info(ErrorInfo(code=code, message=details, details=extra))
    where = {"service": target, "method": method}
    if status == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ServiceTimeoutError(
            f"{target} did not answer within {timeout_s:.1f} s ({method})", **where
        )
    if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return ServiceUnavailableError(f"{target} is unavailable ({method}): {details}", **where)
    if status == grpc.StatusCode.UNIMPLEMENTED:
        return InvalidRequestError(
            f"{target} does not implement {method} (is it an older roost?): {details}",
            code=ErrorCode.UNKNOWN_OP,
            **where,
        )
    if status == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(f"{target}: {details} ({method})", **where)
    mapped = _CODE_BY_STATUS.get(status, ErrorCode.INTERNAL) if status else ErrorCode.INTERNAL
    return RoostError.from_info(
        ErrorInfo(
            code=mapped,
            message=f"{target} failed {method} ({_status_name(status)}): {details}",
            details=where,
        )
    )


def _parts(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str, Any]:
    # grpc.aio raises AioRpcError; anything else implementing grpc.Call answers the same
    # accessors. An RpcError without them (it should not happen) still gives an error.
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    trailing = getattr(exc, "trailing_metadata", None)
    return (
        code() if callable(code) else None,
        (details() if callable(details) else None) or str(exc) or type(exc).__name__,
        trailing() if callable(trailing) else None,
    )


def _roost_code(trailing: Any) -> tuple[str | None, dict[str, Any]]:
    code: str | None = None
    extra: dict[str, Any] = {}
    for key, value in trailing or ():
        if key == ERROR_CODE_KEY:
            code = value.decode() if isinstance(value, bytes) else str(value)
        elif key == ERROR_DETAILS_KEY:
            try:
                decoded = msgspec.json.decode(value)
            except msgspec.DecodeError:
                continue
            if isinstance(decoded, dict):
                # "code"/"message" would collide with the exception's own arguments
                extra = {k: v for k, v in decoded.items() if k not in ("code", "message")}
    return code, extra


def _status_name(status: grpc.StatusCode | None) -> str:
    return status.name if status is not None else "no status"
