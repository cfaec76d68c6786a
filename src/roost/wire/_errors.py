"""HTTP statuses of roost's error codes, and the OpenAI error shape roost's servers answer with."""

from __future__ import annotations

from typing import Any

from roost.protocol import ErrorCode, RoostError

STATUS_BY_CODE: dict[str, int] = {
    ErrorCode.INVALID_MESSAGE: 400,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.INVALID_CONFIG: 400,
    ErrorCode.INVALID_MANIFEST: 400,
    ErrorCode.UNKNOWN_OP: 400,
    ErrorCode.AUTH: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CANCELLED: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNEXPECTED: 500,
    ErrorCode.UPSTREAM: 502,
    ErrorCode.AGENT_FAILED: 502,
    ErrorCode.TOOL_FAILED: 502,
    ErrorCode.NO_RESPONDERS: 503,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.ENGINE_MISSING: 503,
    ErrorCode.ENGINE_START_FAILED: 503,
    ErrorCode.ENGINE_CRASH_LOOP: 503,
    ErrorCode.TIMEOUT: 504,
}
"""The HTTP status of every roost error code (a test checks that none is missing)."""


def status_for(error: RoostError) -> int:
    """The HTTP status the provider answers a roost error with."""
    return STATUS_BY_CODE.get(error.code, 500)


def error_type(status: int) -> str:
    """The OpenAI error ``type`` of an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status < 500:
        return "invalid_request_error"
    return "server_error"


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI's API answers errors."""
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}
