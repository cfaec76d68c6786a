"""Ollama through its native API (``/api/chat``, ``/api/embed``, ``/api/tags``) with the
official ``ollama`` client."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from roost.engines._base import (
    TokenCallback,
    new_call_id,
    parse_arguments,
    status_error,
    unreachable_error,
    where,
)
from roost.protocol import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    EmbedResult,
    InvalidRequestError,
    ToolCall,
    UpstreamError,
    Usage,
)
from roost.stores import ModelRecord

if TYPE_CHECKING:
    import ollama

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"

# ModelRecord.options keys that are request fields rather than model options
_REQUEST_FIELDS = ("keep_alive", "think", "format", "dimensions", "truncate")


class OllamaEngine:
    """Chat and embeddings from an Ollama server.

    ``ModelRecord.target`` is the Ollama model name (``llama3.2:3b``). ``ModelRecord.options``
    go to Ollama as model options (``num_ctx``, ``temperature``, ``seed``, ...), except
    ``keep_alive``, ``think``, ``format`` (chat) and ``dimensions``, ``truncate`` (embed),
    which are request fields. A request's ``max_tokens`` becomes ``num_predict``.
    """

    name = "ollama"

    def __init__(
        self,
        base_url: str = DEFAULT_OLLAMA_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        import httpx
        import ollama

        self.base_url = (base_url or DEFAULT_OLLAMA_URL).rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._client = ollama.AsyncClient(
            host=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            headers=headers,
        )

    async def chat(
        self,
        model: ModelRecord,
        request: ChatRequest,
        *,
        on_token: TokenCallback | None = None,
    ) -> ChatResult:
        """``POST /api/chat``; streamed as NDJSON when ``on_token`` is given."""

        if not request.messages:
            raise InvalidRequestError("a chat request needs at least one message")
        opts = dict(model.options)
        fields = {k: opts.pop(k) for k in _REQUEST_FIELDS if k in opts}
        fields.pop("dimensions", None)
        fields.pop("truncate", None)
        if request.temperature is not None:
            opts["temperature"] = request.temperature
        if request.max_tokens is not None:
            opts["num_predict"] = request.max_tokens
        kwargs: dict[str, Any] = {
            "model": model.target,
            "messages": [_to_ollama(m) for m in request.messages],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
            or None,
            "options": opts or None,
            **fields,
        }
        parts: list[str] = []
        calls: list[ToolCall] = []
        final: ollama.ChatResponse | None = None
        try:
            if on_token is None:
                final = await self._client.chat(**kwargs, stream=False)
                parts.append(final.message.content or "")
                calls.extend(_calls(final.message))
            else:
                stream = await self._client.chat(**kwargs, stream=True)
                async for part in stream:
                    text = part.message.content or ""
                    if text:
                        parts.append(text)
                        await on_token(text)
                    calls.extend(_calls(part.message))
                    if part.done:
                        final = part
        except Exception as exc:
            mapped = self._error(exc, model)
            if mapped is exc:
                raise
            raise mapped from exc
        if final is None:
            raise UpstreamError(
                f"{where(self.name, model, self.base_url)}: the stream ended without a final "
                "message",
                engine=self.name,
                model=model.name,
            )
        finish = "tool_calls" if calls else (final.done_reason or "stop")
        return ChatResult(
            message=ChatMessage(role="assistant", content="".join(parts), tool_calls=calls),
            model=model.name,
            finish_reason=finish,
            usage=Usage(final.prompt_eval_count or 0, final.eval_count or 0),
        )

    async def embed(self, model: ModelRecord, inputs: list[str]) -> EmbedResult:
        """``POST /api/embed``: one vector per input; usage from ``prompt_eval_count``."""
        if not inputs:
            return EmbedResult(vectors=[], model=model.name, dimension=model.dimension)
        opts = dict(model.options)
        fields = {k: opts.pop(k) for k in ("keep_alive", "dimensions", "truncate") if k in opts}
        for key in ("think", "format"):
            opts.pop(key, None)
        try:
            response = await self._client.embed(
                model=model.target, input=list(inputs), options=opts or None, **fields
            )
        except Exception as exc:
            mapped = self._error(exc, model)
            if mapped is exc:
                raise
            raise mapped from exc
        vectors = [[float(x) for x in row] for row in response.embeddings]
        if len(vectors) != len(inputs):
            raise UpstreamError(
                f"{where(self.name, model, self.base_url)}: returned {len(vectors)} vectors "
                f"for {len(inputs)} inputs",
                engine=self.name,
                model=model.name,
            )
        return EmbedResult(
            vectors=vectors,
            model=model.name,
            dimension=len(vectors[0]) if vectors else model.dimension,
            usage=Usage(prompt_tokens=response.prompt_eval_count or 0),
        )

    async def list_models(self) -> list[str]:
        """``GET /api/tags``: the models pulled on the server."""
        try:
            response = await self._client.list()
        except Exception as exc:
            mapped = self._error(exc, None)
            if mapped is exc:
                raise
            raise mapped from exc
        return sorted(m.model for m in response.models if m.model)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.close()  # type: ignore[no-untyped-call]

    def _error(self, exc: Exception, model: ModelRecord | None) -> Exception:
        """The roost error for a client failure; other exceptions come back unchanged."""
        import httpx
        import ollama
        import pydantic

        if isinstance(exc, ollama.ResponseError):
            if exc.status_code < 0:  # an error reported inside a stream
                return UpstreamError(
                    f"{where(self.name, model, self.base_url)}: failed: {exc.error}",
                    engine=self.name,
                    base_url=self.base_url,
                )
            return status_error(
                exc.status_code,
                str(exc.error),
                engine=self.name,
                model=model,
                base_url=self.base_url,
            )
        if isinstance(exc, ConnectionError | httpx.TransportError):
            return unreachable_error(exc, engine=self.name, model=model, base_url=self.base_url)
        if isinstance(exc, pydantic.ValidationError | json.JSONDecodeError):
            return UpstreamError(
                f"{where(self.name, model, self.base_url)}: malformed response: {exc}",
                engine=self.name,
                base_url=self.base_url,
            )
        return exc


def _to_ollama(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.arguments}} for c in message.tool_calls
        ]
    if message.role == "tool" and message.name:
        out["tool_name"] = message.name
    return out


def _calls(message: ollama.Message) -> list[ToolCall]:
    return [
        ToolCall(
            id=new_call_id(),
            name=call.function.name,
            arguments=parse_arguments(call.function.arguments),
        )
        for call in message.tool_calls or []
    ]
