"""``/v1``: the OpenAI API, where a model is a deployed agent.

``GET /v1/models`` lists the agents; ``POST /v1/chat/completions`` runs the agent named by
``model`` on the conversation (its last user message is the run's prompt; the whole
conversation is in the input as ``messages``), streaming ``chat.completion.chunk``s from the
run's token events when ``stream`` is set. Each call is a recorded run. The header
``X-Roost-Session`` continues a session; every answer names its session in the same header.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from roost.platform import PlatformAPI
from roost.protocol import InvalidRequestError, RoostError
from roost.server._deps import Caller, Platform, needs
from roost.server._runs_io import completion_of, follow_tokens, run_input, text_of
from roost.wire import ChatCompletionRequest, decode_body, messages_of

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(needs("runs"))])

SESSION_HEADER = "X-Roost-Session"


@router.get("/models", summary="The agents, as OpenAI models")
async def list_models(platform: Platform, caller: Caller) -> dict[str, Any]:
    agents = sorted(await platform.list_agents(), key=lambda a: a.name)
    return {
        "object": "list",
        "data": [
            {"id": a.name, "object": "model", "created": int(a.deployed_at), "owned_by": "roost"}
            for a in agents
        ],
    }


@router.post(
    "/chat/completions",
    summary="Run an agent on a conversation (OpenAI chat completions)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def chat_completions(request: Request, platform: Platform, caller: Caller) -> Any:
    body = decode_body(await request.body(), ChatCompletionRequest)
    if not body.model:
        raise InvalidRequestError("'model' is required: the name of a deployed agent")
    messages = messages_of(body.messages)
    session = request.headers.get(SESSION_HEADER) or None
    started = await platform.start(body.model, run_input(messages), session=session)
    headers = {SESSION_HEADER: started.session.name}
    completion_id = f"chatcmpl-{started.run_id}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _stream(
            platform, started.run_id, started.session.id, completion_id, created, body.model,
            include_usage,
        )  # fmt: skip
        return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
    complete = await completion_of(platform, started.run_id, started.session.id)
    usage = complete.usage
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text_of(complete.output),
                        "refusal": None,
                    },
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        },
        headers=headers,
    )


async def _stream(
    platform: PlatformAPI,
    run_id: str,
    session: str,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        out: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if include_usage:
            out["usage"] = None
        return b"data: " + json.dumps(out).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    streamed = False
    async with contextlib.aclosing(follow_tokens(platform, run_id, session)) as items:
        try:
            async for item in items:
                if isinstance(item, str):
                    streamed = True
                    yield chunk({"content": item})
                else:
                    complete = item
        except RoostError as exc:
            # the status line is sent: the failure travels in the stream, as OpenAI's does
            error = {"error": {"message": exc.message, "type": "server_error", "code": exc.code}}
            yield b"data: " + json.dumps(error).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
            return
    if not streamed:
        yield chunk({"content": text_of(complete.output)})
    yield chunk({}, "stop")
    if include_usage:
        usage = complete.usage
        final = json.loads(chunk({})[6:])
        final["choices"] = []
        final["usage"] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
        yield b"data: " + json.dumps(final).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"
