"""The OpenAI API's wire shapes and their conversion to roost's protocol types.

Roost's HTTP servers speak the OpenAI chat-completions and embeddings API: the provider
endpoint to process agents, and the API server to applications. Request shapes ignore
unknown fields, as OpenAI-compatible servers do; every conversion problem is an
:class:`~roost.protocol.InvalidRequestError` that says what is wrong.
"""

from __future__ import annotations

import base64
import json
import struct
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, TypeVar

import msgspec

from roost.protocol import ChatMessage, ChatResult, InvalidRequestError, ToolCall, ToolSpec

T = TypeVar("T")

_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


class FunctionCallIn(msgspec.Struct):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(msgspec.Struct):
    function: FunctionCallIn
    id: str = ""
    type: str = "function"


class MessageIn(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionDefIn(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolIn(msgspec.Struct):
    function: FunctionDefIn
    type: str = "function"


class StreamOptionsIn(msgspec.Struct):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct):
    messages: list[MessageIn]
    model: str = ""
    tools: list[ToolIn] | None = None
    tool_choice: Any = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptionsIn | None = None


class EmbeddingRequest(msgspec.Struct):
    input: str | list[str]
    model: str = ""
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


def decode_body(data: bytes, type: type[T]) -> T:
    """``data`` (a request body) decoded as ``type``; any problem is an
    :class:`~roost.protocol.InvalidRequestError` saying what is wrong."""
    try:
        return msgspec.json.decode(data, type=type)
    except RecursionError:
        raise InvalidRequestError("request body is nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None


def text_of(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[str] = []
    for part in content:
        text = part.get("text")
        if part.get("type") not in ("text", "input_text") or not isinstance(text, str):
            raise InvalidRequestError(
                f"unsupported content part of type {part.get('type')!r}: only text is supported"
            )
        parts.append(text)
    return "\n".join(parts)


def arguments_of(call: ToolCallIn) -> dict[str, Any]:
    raw = call.function.arguments
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"tool call {call.id or call.function.name!r}: arguments are not valid JSON ({exc})"
        ) from None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"tool call {call.id or call.function.name!r}: arguments must be a JSON object"
        )
    return value


def messages_of(messages: list[MessageIn]) -> list[ChatMessage]:
    if not messages:
        raise InvalidRequestError("'messages' must not be empty")
    names: dict[str, str] = {}  # tool call id -> tool name, to name tool results
    converted: list[ChatMessage] = []
    for message in messages:
        calls: list[ToolCall] = []
        for call in message.tool_calls or []:
            if call.type != "function":
                raise InvalidRequestError(f"unsupported tool call type {call.type!r}")
            calls.append(
                ToolCall(id=call.id, name=call.function.name, arguments=arguments_of(call))
            )
            if call.id:
                names[call.id] = call.function.name
        role = "system" if message.role == "developer" else message.role
        tool_call_id = message.tool_call_id or ""
        if role == "tool" and not tool_call_id:
            raise InvalidRequestError("a message with role 'tool' needs 'tool_call_id'")
        converted.append(
            ChatMessage(
                role=role,
                content=text_of(message.content),
                tool_calls=calls,
                tool_call_id=tool_call_id,
                name=message.name or (names.get(tool_call_id, "") if role == "tool" else ""),
            )
        )
    return converted


def tools_of(tools: list[ToolIn]) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for tool in tools:
        if tool.type != "function":
            raise InvalidRequestError(f"unsupported tool type {tool.type!r} (only 'function')")
        fn = tool.function
        if fn.parameters is None:
            specs.append(ToolSpec(name=fn.name, description=fn.description or ""))
        else:
            specs.append(
                ToolSpec(name=fn.name, description=fn.description or "", parameters=fn.parameters)
            )
    return specs


def tool_calls_out(result: ChatResult) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
        }
        for call in result.message.tool_calls
    ]


def assistant_message(result: ChatResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.message.content}
    calls = tool_calls_out(result)
    if calls:
        message["tool_calls"] = calls
        message["content"] = result.message.content or None
    message["refusal"] = None
    return message


def finish_reason(result: ChatResult) -> str:
    if result.message.tool_calls:
        return "tool_calls"
    reason = result.finish_reason
    return reason if reason in _FINISH_REASONS else "stop"


def usage_of(result: ChatResult) -> dict[str, int]:
    usage = result.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def stream_chunks(
    result: ChatResult, completion_id: str, created: int, model: str, include_usage: bool
) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a stream that delivers ``result``."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ],
        }
        if include_usage:
            out["usage"] = None
        return out

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    if result.message.content:
        yield chunk({"content": result.message.content})
    for index, call in enumerate(tool_calls_out(result)):
        yield chunk({"tool_calls": [{"index": index, **call}]})
    yield chunk({}, finish_reason(result))
    if include_usage:
        final = chunk({})
        final["choices"] = []
        final["usage"] = usage_of(result)
        yield final


async def sse_events(chunks: Iterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    for item in chunks:
        yield b"data: " + msgspec.json.encode(item) + b"\n\n"
    yield b"data: [DONE]\n\n"


def encode_vector(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector
