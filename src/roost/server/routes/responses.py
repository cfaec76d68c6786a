"""``POST /v1/responses``: the OpenAI Responses API, where a model is a deployed agent.

The agent named by ``model`` runs on ``input`` (a string, or a list of input messages whose
content is text), with ``instructions`` as a system message first. The run's input follows
``/v1/chat/completions``: the last user message is the prompt, and with several messages
the whole conversation is in ``{"prompt", "messages"}``. The answer is a ``response``
whose ``output`` is one assistant message holding the agent's output as ``output_text``.

A response's id names the session it ran in: ``resp_<session id>_<run id>``. Given as
``previous_response_id``, it continues that session (on its main branch), so a
conversation spans calls without any state in this process: any replica continues it.
Every answer also names its session in the header ``X-Roost-Session``.

``stream: true`` answers the server-sent events of OpenAI's stream, each with its
``sequence_number``: ``response.created``, ``response.in_progress``, then (at the run's
first token, or its end) ``response.output_item.added`` and ``response.content_part.added``,
a ``response.output_text.delta`` per token event of the run (the whole output as one delta
if it streamed none), ``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done`` and ``response.completed``. A run that fails once the stream
has begun ends it with ``response.failed``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from roost.platform import PlatformAPI
from roost.protocol import (
    ChatMessage,
    CompleteMessage,
    InvalidRequestError,
    NotFoundError,
    RoostError,
)
from roost.server._deps import Caller, Platform, needs
from roost.server._runs_io import completion_of, follow_tokens, run_input, text_of
from roost.server.routes.openai import SESSION_HEADER
from roost.wire import decode_body

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(needs("runs"))])

_RESPONSE_ID = re.compile(r"resp_(?P<session>[0-9a-f]{32})_(?P<run>[A-Za-z0-9-]{1,100})")
_ROLES: dict[str, Literal["system", "user", "assistant"]] = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
}
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


class ResponsesRequest(msgspec.Struct):
    """The fields of a Responses request roost reads (others are ignored, as OpenAI-compatible
    servers do)."""

    model: str = ""
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    stream: bool | None = False
    metadata: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None


def response_id(session: str, run_id: str) -> str:
    """The id of the response of run ``run_id`` in session ``session`` (its id, not name)."""
    return f"resp_{session}_{run_id}"


def session_of(previous_response_id: str) -> str:
    """The session id a response id names (an InvalidRequestError if it is not one)."""
    found = _RESPONSE_ID.fullmatch(previous_response_id)
    if found is None:
        raise InvalidRequestError(
            f"previous_response_id: {previous_response_id!r} is not a response id this API gave"
        )
    return found["session"]


def messages_of(body: ResponsesRequest) -> list[ChatMessage]:
    """The conversation of a request: its instructions, then its input messages."""
    messages: list[ChatMessage] = []
    if body.instructions:
        messages.append(ChatMessage(role="system", content=body.instructions))
    if body.input is None:
        raise InvalidRequestError("'input' is required: a string or a list of input messages")
    if isinstance(body.input, str):
        messages.append(ChatMessage(role="user", content=body.input))
        return messages
    if not body.input:
        raise InvalidRequestError("'input' must not be empty")
    for index, item in enumerate(body.input):
        kind = item.get("type", "message")
        if kind != "message":
            raise InvalidRequestError(
                f"input[{index}]: unsupported item type {kind!r}: only messages are supported"
            )
        role = _ROLES.get(str(item.get("role")))
        if role is None:
            raise InvalidRequestError(
                f"input[{index}].role: {item.get('role')!r} is not one of "
                "'user', 'assistant', 'system', 'developer'"
            )
        messages.append(ChatMessage(role=role, content=_text(item.get("content"), index)))
    return messages


def _text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"input[{index}].content: a string or a list of content parts")
    parts: list[str] = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        text = part.get("text") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS or not isinstance(text, str):
            raise InvalidRequestError(
                f"input[{index}].content[{number}]: unsupported content part of type {kind!r}: "
                "only text is supported"
            )
        parts.append(text)
    return "\n".join(parts)


@router.post(
    "/responses",
    summary="Run an agent on an input (OpenAI Responses)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def create_response(request: Request, platform: Platform, caller: Caller) -> Any:
    body = decode_body(await request.body(), ResponsesRequest)
    if not body.model:
        raise InvalidRequestError("'model' is required: the name of a deployed agent")
    messages = messages_of(body)
    session: str | None = None
    if body.previous_response_id:
        session = session_of(body.previous_response_id)
        try:
            previous = await platform.get_session(session)
        except NotFoundError:
            raise NotFoundError(
                f"previous_response_id: no response {body.previous_response_id!r}"
            ) from None
        if previous.agent != body.model:
            raise InvalidRequestError(
                f"previous_response_id: {body.previous_response_id!r} is a response of agent "
                f"{previous.agent!r}, not {body.model!r}"
            )
    started = await platform.start(body.model, run_input(messages), session=session)
    shape = _Shape(
        id=response_id(started.session.id, started.run_id),
        message_id=f"msg_{started.run_id}",
        created_at=int(time.time()),
        body=body,
    )
    headers = {SESSION_HEADER: started.session.name}
    if body.stream:
        events = _stream(platform, started.run_id, started.session.id, shape)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    complete = await completion_of(platform, started.run_id, started.session.id)
    message = shape.message(text_of(complete.output), "completed")
    return JSONResponse(shape.response("completed", [message], complete), headers=headers)


@dataclass(frozen=True)
class _Shape:
    """The objects of one response: the response itself, its message and content part."""

    id: str
    message_id: str
    created_at: int
    body: ResponsesRequest

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        complete: CompleteMessage | None = None,
        error: RoostError | None = None,
    ) -> dict[str, Any]:
        body = self.body
        usage = None
        if complete is not None:
            usage = {
                "input_tokens": complete.usage.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": complete.usage.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": complete.usage.total_tokens,
            }
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None if error is None else {"code": error.code, "message": error.message},
            "incomplete_details": None,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "metadata": body.metadata or {},
            "model": body.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": body.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": body.top_p,
            "truncation": "disabled",
            "usage": usage,
            "user": None,
        }

    def message(self, text: str | None, status: str) -> dict[str, Any]:
        """The assistant message (no content yet when ``text`` is None)."""
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [] if text is None else [self.part(text)],
        }

    def part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


async def _stream(
    platform: PlatformAPI, run_id: str, session: str, shape: _Shape
) -> AsyncIterator[bytes]:
    sequence = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal sequence
        data = {"type": kind, "sequence_number": sequence, **fields}
        sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    where = {"item_id": shape.message_id, "output_index": 0, "content_index": 0}
    yield event("response.created", response=shape.response("in_progress", []))
    yield event("response.in_progress", response=shape.response("in_progress", []))
    streamed: list[str] = []
    opened = False

    def open_message() -> list[bytes]:
        nonlocal opened
        opened = True
        return [
            event(
                "response.output_item.added",
                output_index=0,
                item=shape.message(None, "in_progress"),
            ),
            event("response.content_part.added", **where, part=shape.part("")),
        ]

    async with contextlib.aclosing(follow_tokens(platform, run_id, session)) as items:
        try:
            async for item in items:
                if isinstance(item, CompleteMessage):
                    complete = item
                    continue
                for opening in [] if opened else open_message():
                    yield opening
                streamed.append(item)
                yield event("response.output_text.delta", **where, delta=item, logprobs=[])
        except RoostError as exc:
            # the status line is sent: the failure ends the stream, as OpenAI's does
            output = [shape.message("".join(streamed), "incomplete")] if opened else []
            yield event("response.failed", response=shape.response("failed", output, error=exc))
            return
    text = text_of(complete.output)
    if not opened:
        for opening in open_message():
            yield opening
    if not streamed:
        yield event("response.output_text.delta", **where, delta=text, logprobs=[])
    yield event("response.output_text.done", **where, text=text, logprobs=[])
    yield event("response.content_part.done", **where, part=shape.part(text))
    message = shape.message(text, "completed")
    yield event("response.output_item.done", output_index=0, item=message)
    yield event("response.completed", response=shape.response("completed", [message], complete))


__all__ = ["router"]
