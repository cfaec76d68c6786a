"""Engine interfaces and the mapping of upstream failures to roost errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from roost.protocol import (
    ChatRequest,
    ChatResult,
    EmbedResult,
    ErrorCode,
    InvalidRequestError,
    NotFoundError,
    RoostError,
    ServiceTimeoutError,
    ServiceUnavailableError,
    UpstreamError,
)
from roost.stores import ModelRecord

TokenCallback = Callable[[str], Awaitable[None]]
"""Called with each piece of text a model produces, in order, while it produces it."""

ENGINE_MISSING = ErrorCode.ENGINE_MISSING
"""Error code: the engine's optional Python package is not installed (not retryable)."""


@runtime_checkable
class ChatEngine(Protocol):
    """Something that answers chats: an embedded model runner or a client of a remote API."""

    name: str

    async def chat(
        self,
        model: ModelRecord,
        request: ChatRequest,
        *,
        on_token: TokenCallback | None = None,
    ) -> ChatResult:
        """Answer ``request`` with ``model``.

        With ``on_token`` the answer's text is streamed to it while it is generated (the
        result still carries the whole message). Tool calls come back as
        :class:`~roost.protocol.ToolCall` with parsed arguments and ``finish_reason``
        ``"tool_calls"``. Failures raise :class:`~roost.protocol.RoostError` subclasses whose
        ``retryable`` flag says whether repeating the call may help.
        """
        ...

    async def list_models(self) -> list[str]:
        """Names of the models this engine can serve (what ``ModelRecord.target`` takes)."""
        ...

    async def close(self) -> None:
        """Release clients, threads and loaded models."""
        ...


@runtime_checkable
class EmbeddingEngine(Protocol):
    """Something that turns texts into vectors."""

    name: str

    async def embed(self, model: ModelRecord, inputs: list[str]) -> EmbedResult:
        """One vector per input, in order, with ``dimension`` and usage filled in."""
        ...

    async def list_models(self) -> list[str]:
        """Names of the models this engine can serve."""
        ...

    async def close(self) -> None:
        """Release clients, threads and loaded models."""
        ...


def new_call_id() -> str:
    """A fresh tool call id, for engines whose wire format has none (Ollama, llama.cpp)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool call arguments as a dict, from a dict or a JSON string.

    Arguments that are not a JSON object are kept verbatim under ``"_raw_arguments"`` so the
    tool reports the problem back to the model instead of the call being silently dropped.
    """
    if isinstance(raw, dict):
        return dict(raw)
    if raw is None:
        return {}
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return {"_raw_arguments": raw}
        if isinstance(value, dict):
            return value
    return {"_raw_arguments": raw}


def where(engine: str, model: ModelRecord | None, base_url: str) -> str:
    """``"ollama at http://host:11434, model 'llama3'"``: the context of an engine error."""
    text = f"{engine} at {base_url}" if base_url else engine
    if model is not None:
        text += f", model {model.target!r}"
        if model.name != model.target:
            text += f" (roost model {model.name!r})"
    return text


def status_error(
    status: int,
    detail: str,
    *,
    engine: str,
    model: ModelRecord | None,
    base_url: str,
    retry_after: str | None = None,
) -> RoostError:
    """The roost error for an HTTP error ``status`` answered by an upstream API.

    429 is ``rate_limited`` and 5xx ``upstream_error`` (both retryable); 401/403 are ``auth``,
    404 ``not_found``, 408 ``timeout``, other 4xx ``invalid_request`` (not retryable).
    """
    ctx = where(engine, model, base_url)
    detail = detail.strip() or "no detail"
    details: dict[str, Any] = {"engine": engine, "base_url": base_url, "status": status}
    if model is not None:
        details["model"] = model.name
    if retry_after:
        details["retry_after"] = retry_after
    if status == 429:
        hint = f" (retry after {retry_after}s)" if retry_after else ""
        return ServiceUnavailableError(
            f"{ctx}: rate limited (HTTP 429){hint}: {detail}",
            code=ErrorCode.RATE_LIMITED,
            **details,
        )
    if status in (401, 403):
        return RoostError(
            f"{ctx}: not authorized (HTTP {status}): {detail}; check the model's API key secret",
            code=ErrorCode.AUTH,
            **details,
        )
    if status == 404:
        return NotFoundError(f"{ctx}: not found (HTTP 404): {detail}", **details)
    if status == 408:
        return ServiceTimeoutError(f"{ctx}: upstream timed out (HTTP 408): {detail}", **details)
    if 400 <= status < 500:
        return InvalidRequestError(
            f"{ctx}: rejected the request (HTTP {status}): {detail}", **details
        )
    if status >= 500:
        return UpstreamError(f"{ctx}: failed (HTTP {status}): {detail}", **details)
    return UpstreamError(f"{ctx}: failed: {detail}", **details)


def unreachable_error(
    exc: BaseException, *, engine: str, model: ModelRecord | None, base_url: str
) -> ServiceUnavailableError:
    """The roost error for a connection failure or a timeout talking to ``base_url``."""
    kind = "timed out" if "timeout" in type(exc).__name__.lower() else "is unreachable"
    reason = str(exc) or type(exc).__name__
    details: dict[str, Any] = {"engine": engine, "base_url": base_url}
    if model is not None:
        details["model"] = model.name
    return ServiceUnavailableError(f"{where(engine, model, base_url)} {kind}: {reason}", **details)


def missing_package(engine: str, package: str) -> RoostError:
    """The error for an engine whose optional package is not installed."""
    return RoostError(
        f"the {engine} engine needs the {package!r} package, which is not installed "
        "(install roost with the 'local' extra: pip install 'roost[local]')",
        code=ENGINE_MISSING,
        engine=engine,
    )
