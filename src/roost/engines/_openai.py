"""Any OpenAI-compatible API (OpenAI, OpenRouter, vLLM, llama.cpp server, Ollama's ``/v1``)
through the official ``openai`` client."""

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
    from openai.types.chat import ChatCompletion

DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
EMBED_BATCH = 256  # inputs per embeddings request (OpenAI accepts up to 2048)

# ModelRecord.options keys with a meaning of their own; the rest go into the request body
_OWN_OPTIONS = ("stream_usage", "dimensions", "batch_size", "extra_body")


class OpenAIEngine:
    """Chat and embeddings from an OpenAI-compatible HTTP API.

    ``ModelRecord.target`` is the upstream model name (``gpt-4o-mini``,
    ``meta-llama/llama-3.1-8b-instruct``). ``ModelRecord.options``: ``dimensions`` (embeddings),
    ``batch_size`` (inputs per embeddings request), ``stream_usage`` (default true: ask for
    usage in streams with ``stream_options.include_usage``; turn off for servers that reject
    it), ``extra_body`` (merged into each request); other keys (``top_p``, ``seed``, ...) are
    sent as chat request fields.

    The client does not retry by default (``max_retries=0``): failures surface at once as
    roost errors whose ``retryable`` flag lets the caller decide.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str = DEFAULT_OPENAI_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 0,
    ) -> None:
        import openai

        self.base_url = (base_url or DEFAULT_OPENAI_URL).rstrip("/")
        # Never fall back to $OPENAI_API_KEY: it must not leak to an arbitrary base_url.
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "unset",
            timeout=openai.Timeout(timeout_s, connect=connect_timeout_s),
            max_retries=max_retries,
        )

    async def chat(
        self,
        model: ModelRecord,
        request: ChatRequest,
        *,
        on_token: TokenCallback | None = None,
    ) -> ChatResult:
        """``POST /chat/completions``; streamed (SSE) when ``on_token`` is given."""
        import openai

        if not request.messages:
            raise InvalidRequestError("a chat request needs at least one message")
        opts = dict(model.options)
        stream_usage = bool(opts.get("stream_usage", True))
        extra_body = opts.get("extra_body") or None
        body: dict[str, Any] = {k: v for k, v in opts.items() if k not in _OWN_OPTIONS}
        body.update(
            model=model.target,
            messages=[_to_openai(m) for m in request.messages],
        )
        if request.tools:
            body["tools"] = [
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
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        try:
            if on_token is None:
                completion: ChatCompletion = await self._client.chat.completions.create(
                    **body, extra_body=extra_body
                )
                return self._result(model, completion)
            if stream_usage:
                body["stream_options"] = {"include_usage": True}
            stream = await self._client.chat.completions.create(
                **body, stream=True, extra_body=extra_body
            )
            parts: list[str] = []
            calls: dict[int, dict[str, Any]] = {}
            finish = ""
            usage = Usage()
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices[:1] if chunk.choices else []:
                    delta = choice.delta
                    if delta.content:
                        parts.append(delta.content)
                        await on_token(delta.content)
                    for piece in delta.tool_calls or []:
                        slot = calls.setdefault(piece.index, {"id": "", "name": "", "args": []})
                        if piece.id:
                            slot["id"] = piece.id
                        if piece.function is not None:
                            if piece.function.name:
                                slot["name"] += piece.function.name
                            if piece.function.arguments:
                                slot["args"].append(piece.function.arguments)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except openai.APIError as exc:
            raise self._error(exc, model) from exc
        tool_calls = [
            ToolCall(
                id=slot["id"] or new_call_id(),
                name=slot["name"],
                arguments=parse_arguments("".join(slot["args"])),
            )
            for _, slot in sorted(calls.items())
            if slot["name"]
        ]
        if tool_calls:
            finish = "tool_calls"
        return ChatResult(
            message=ChatMessage(role="assistant", content="".join(parts), tool_calls=tool_calls),
            model=model.name,
            finish_reason=finish or "stop",
            usage=usage,
        )

    def _result(self, model: ModelRecord, completion: ChatCompletion) -> ChatResult:
        if not completion.choices:
            raise UpstreamError(
                f"{where(self.name, model, self.base_url)}: the completion has no choices",
                engine=self.name,
                model=model.name,
            )
        choice = completion.choices[0]
        message = choice.message
        calls = [
            ToolCall(
                id=call.id or new_call_id(),
                name=call.function.name,
                arguments=parse_arguments(call.function.arguments),
            )
            for call in message.tool_calls or []
            if call.type == "function"
        ]
        usage = completion.usage
        return ChatResult(
            message=ChatMessage(role="assistant", content=message.content or "", tool_calls=calls),
            model=model.name,
            finish_reason="tool_calls" if calls else (choice.finish_reason or "stop"),
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
        )

    async def embed(self, model: ModelRecord, inputs: list[str]) -> EmbedResult:
        """``POST /embeddings`` in batches: one vector per input, in order."""
        import openai

        if not inputs:
            return EmbedResult(vectors=[], model=model.name, dimension=model.dimension)
        opts = model.options
        batch = max(1, int(opts.get("batch_size", EMBED_BATCH)))
        kwargs: dict[str, Any] = {"model": model.target}
        if "dimensions" in opts:
            kwargs["dimensions"] = int(opts["dimensions"])
        if opts.get("extra_body"):
            kwargs["extra_body"] = opts["extra_body"]
        vectors: list[list[float]] = []
        tokens = 0
        try:
            for start in range(0, len(inputs), batch):
                chunk = list(inputs[start : start + batch])
                response = await self._client.embeddings.create(input=chunk, **kwargs)
                rows = sorted(response.data, key=lambda d: d.index)
                if len(rows) != len(chunk):
                    raise UpstreamError(
                        f"{where(self.name, model, self.base_url)}: returned {len(rows)} "
                        f"vectors for {len(chunk)} inputs",
                        engine=self.name,
                        model=model.name,
                    )
                vectors.extend([float(x) for x in row.embedding] for row in rows)
                if response.usage is not None:
                    tokens += response.usage.prompt_tokens
        except openai.APIError as exc:
            raise self._error(exc, model) from exc
        return EmbedResult(
            vectors=vectors,
            model=model.name,
            dimension=len(vectors[0]) if vectors else model.dimension,
            usage=Usage(prompt_tokens=tokens),
        )

    async def list_models(self) -> list[str]:
        """``GET /models``: the ids the API serves."""
        import openai

        try:
            return sorted([m.id async for m in self._client.models.list()])
        except openai.APIError as exc:
            raise self._error(exc, None) from exc

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    def _error(self, exc: Exception, model: ModelRecord | None) -> Exception:
        import openai

        if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
            cause = exc.__cause__ or exc
            return unreachable_error(
                cause if "timeout" in type(exc).__name__.lower() else exc,
                engine=self.name,
                model=model,
                base_url=self.base_url,
            )
        if isinstance(exc, openai.APIStatusError):
            return status_error(
                exc.status_code,
                _detail(exc),
                engine=self.name,
                model=model,
                base_url=self.base_url,
                retry_after=exc.response.headers.get("retry-after"),
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return UpstreamError(
                f"{where(self.name, model, self.base_url)}: malformed response: {exc}",
                engine=self.name,
                base_url=self.base_url,
            )
        return UpstreamError(
            f"{where(self.name, model, self.base_url)}: {exc}",
            engine=self.name,
            base_url=self.base_url,
        )


def _detail(exc: Any) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            return str(message)
    if isinstance(body, str) and body:
        return body
    return str(exc.message)


def _to_openai(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": json.dumps(call.arguments, ensure_ascii=False),
                },
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
        if message.name:
            out["name"] = message.name
    return out
