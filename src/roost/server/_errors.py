"""Every failure answers JSON with the right status, and bad input is never a 500.

The native API answers ``{"error": {"code", "message", "details"}}``; the OpenAI-compatible
routes under ``/v1`` answer OpenAI's error shape, so the official clients raise their own
typed errors. The status of a roost error comes from :data:`roost.wire.STATUS_BY_CODE`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from roost.protocol import ErrorCode, RoostError
from roost.wire import error_body, status_for

log = logging.getLogger("roost.server")

OPENAI_PREFIX = "/v1/"

_CODE_BY_STATUS = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.AUTH,
    403: ErrorCode.AUTH,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID_REQUEST,
    409: ErrorCode.INVALID_REQUEST,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.INVALID_REQUEST,
    422: ErrorCode.INVALID_REQUEST,
    429: ErrorCode.RATE_LIMITED,
}


class ApiError(Exception):
    """An HTTP error with a roost code: raised by routes for what is not a RoostError."""

    def __init__(
        self, status: int, message: str, code: str = "", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODE_BY_STATUS.get(status, ErrorCode.INTERNAL)
        self.details = details or {}


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The error response of ``request``'s surface (native, or OpenAI's shape on ``/v1``)."""
    if request.url.path.startswith(OPENAI_PREFIX):
        body = error_body(status, message, code)
    else:
        body = {"error": {"code": code, "message": message, "details": details or {}}}
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, headers=headers)


async def _roost_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RoostError)
    status = status_for(exc)
    if status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc)
    return error_response(request, status, exc.code, exc.message)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.code, exc.message, exc.details)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg", "")}
        for err in exc.errors()
    ]
    message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems) or "invalid request"
    return error_response(request, 422, ErrorCode.INVALID_REQUEST, message, {"problems": problems})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404 and exc.detail == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    else:
        message = str(exc.detail)
    code = _CODE_BY_STATUS.get(status, ErrorCode.INTERNAL)
    return error_response(request, status, code, message, headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(request, 500, ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure of ``app`` as described in the module docstring."""
    app.add_exception_handler(RoostError, _roost_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


__all__ = ["ApiError", "error_response", "install_error_handlers"]
