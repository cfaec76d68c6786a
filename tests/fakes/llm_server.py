"""A real HTTP server that speaks the Ollama and OpenAI wire formats, deterministically.

It stands in for a remote LLM API in tests: the official ``ollama`` and ``openai`` clients
talk to it unchanged. It runs uvicorn (FastAPI) in a background thread on 127.0.0.1 and a
free port.

* Ollama native API at :attr:`FakeLLMServer.ollama_url`: ``POST /api/chat`` (tool calls;
  NDJSON streaming, the default unless ``"stream": false``), ``POST /api/embed``,
  ``GET /api/tags``, ``GET /api/version``.
* OpenAI API at :attr:`FakeLLMServer.openai_url` (``/v1``): ``POST /chat/completions`` (tool
  calls; SSE streaming with ``stream: true``, usage chunk with
  ``stream_options.include_usage``), ``POST /embeddings`` (``float`` or ``base64``,
  ``dimensions``), ``GET /models``.

Behaviour is scripted and observable:

* chat replies come from a queue (:meth:`~FakeLLMServer.reply`,
  :meth:`~FakeLLMServer.reply_tool_call`); with the queue empty the server echoes the last
  user message (``"echo: <text>"``);
* usage is counted in words: prompt tokens are the words of all message contents, completion
  tokens the words of the reply plus one per tool call (a reply's explicit counts win);
  ``max_tokens`` / ``num_predict`` cut the reply to that many words (``finish_reason``
  ``length``);
* embeddings are unit vectors seeded by the sha256 of the text (:func:`fake_embedding`);
* every request is logged (:attr:`~FakeLLMServer.requests`, :meth:`~FakeLLMServer.count`);
* faults are injected for the next N requests: an HTTP status in the API's error shape
  (:meth:`~FakeLLMServer.fail_next`) or a delay (:meth:`~FakeLLMServer.delay_next`);
* with ``delay_s`` set, every chat request (``/api/chat``, ``/v1/chat/completions``) takes
  that long to answer, like a model's generation time (requests still run concurrently);
* with ``api_key`` set, requests without ``Authorization: Bearer <api_key>`` get 401; with
  ``models`` set, unknown model names get 404 like the real servers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

Flavor = Literal["ollama", "openai"]

DEFAULT_MODELS = ("fake-chat", "fake-embed")
_CHAT_PATHS = frozenset({"/api/chat", "/v1/chat/completions"})


def fake_embedding(text: str, dimension: int) -> list[float]:
    """The unit vector the fake server returns for ``text`` (same text, same vector)."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimension)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


@dataclass(frozen=True)
class ToolCallReply:
    """A tool call the fake model makes."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True)
class Reply:
    """One scripted chat reply: text and/or tool calls, optionally with explicit usage."""

    text: str = ""
    tool_calls: tuple[ToolCallReply, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class Fault:
    """An injected fault: answer ``status`` (0: none) after sleeping ``delay_s``."""

    status: int = 0
    delay_s: float = 0.0
    message: str = ""
    retry_after: str | None = None
    path: str | None = None  # only requests to this path (None: any)


@dataclass(frozen=True)
class LoggedRequest:
    """A request that reached the server."""

    method: str
    path: str
    flavor: Flavor
    body: Any
    headers: dict[str, str]

    @property
    def model(self) -> str:
        return str(self.body.get("model", "")) if isinstance(self.body, dict) else ""


_WORD = re.compile(r"\s*\S+|\s+$")


def _pieces(text: str) -> list[str]:
    """``text`` split into word chunks whose concatenation is ``text``."""
    return _WORD.findall(text)


def _words(text: str) -> int:
    return len(text.split())


class FakeLLMServer:
    """The fake LLM API server. Use as a context manager (or :meth:`start` / :meth:`stop`)."""

    def __init__(
        self,
        *,
        models: Iterable[str] | None = DEFAULT_MODELS,
        dimension: int = 16,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        delay_s: float = 0.0,
    ) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, not {delay_s}")
        self.models: list[str] | None = list(models) if models is not None else None
        self.delay_s = delay_s
        self.dimension = dimension
        self.api_key = api_key
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._replies: list[Reply] = []
        self._faults: list[Fault] = []
        self._log: list[LoggedRequest] = []
        self._generation = 0  # bumped by reset(): requests from before it take no replies
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the server (``http://127.0.0.1:<port>``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ollama_url(self) -> str:
        """What an Ollama client takes as ``host``."""
        return self.url

    @property
    def openai_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.url}/v1"

    def start(self) -> FakeLLMServer:
        if self._server is not None:
            return self
        # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they
        # are TCP, and the accepted ones inherit it. Without it Nagle's algorithm meets the
        # client's delayed ACK and every request on a kept-alive connection waits ~40 ms.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", access_log=False, timeout_keep_alive=5
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-llm-server", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake LLM server did not start")
            time.sleep(0.01)
        self._server, self._thread, self._sock = server, thread, sock
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._sock.close()
        self._server = self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting ---------------------------------------------------------------------

    def reply(
        self,
        text: str = "",
        *,
        tool_calls: Iterable[ToolCallReply] = (),
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """Queue the next chat reply."""
        with self._lock:
            self._replies.append(
                Reply(text, tuple(tool_calls), prompt_tokens, completion_tokens, finish_reason)
            )

    def reply_tool_call(
        self, name: str, arguments: dict[str, Any] | None = None, *, text: str = ""
    ) -> None:
        """Queue a reply that calls tool ``name`` with ``arguments``."""
        self.reply(text, tool_calls=[ToolCallReply(name, arguments or {})])

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        message: str = "",
        retry_after: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests (to ``path``, or any) with HTTP ``status``."""
        fault = Fault(status, 0.0, message or f"injected failure {status}", retry_after, path)
        with self._lock:
            self._faults.extend([fault] * times)

    def delay_next(self, seconds: float, times: int = 1, *, path: str | None = None) -> None:
        """Delay the next ``times`` requests (to ``path``, or any) by ``seconds``."""
        with self._lock:
            self._faults.extend([Fault(0, seconds, path=path)] * times)

    def reset(self) -> None:
        """Forget queued replies, pending faults and the request log."""
        with self._lock:
            self._replies.clear()
            self._faults.clear()
            self._log.clear()
            self._generation += 1

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._log)

    def count(self, path: str | None = None) -> int:
        """How many requests reached ``path`` (or the server)."""
        with self._lock:
            return sum(1 for r in self._log if path is None or r.path == path)

    def last(self, path: str | None = None) -> LoggedRequest:
        """The newest request (to ``path``)."""
        with self._lock:
            for logged in reversed(self._log):
                if path is None or logged.path == path:
                    return logged
        raise LookupError(f"no request to {path or 'the server'} yet")

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._replies)

    # --- internals ---------------------------------------------------------------------

    def _next_reply(self, messages: list[dict[str, Any]], generation: int) -> Reply:
        with self._lock:
            if self._replies and generation == self._generation:
                return self._replies.pop(0)
        last_user = next(
            (str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        return Reply(text=f"echo: {last_user}")

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.path is None or fault.path == path:
                    return self._faults.pop(i)
        return None

    def _known(self, model: str) -> bool:
        return self.models is None or model in self.models

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def gate(request: Request, call_next: Any) -> Response:
            path = request.url.path
            flavor: Flavor = "openai" if path.startswith("/v1") else "ollama"
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = raw.decode("utf-8", "replace")
            with self._lock:
                self._log.append(
                    LoggedRequest(request.method, path, flavor, body, dict(request.headers))
                )
                request.state.generation = self._generation
            fault = self._take_fault(path)
            if fault is not None:
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                if fault.status:
                    headers = {"retry-after": fault.retry_after} if fault.retry_after else None
                    return _error(flavor, fault.status, fault.message, headers)
            authorized = request.headers.get("authorization") == f"Bearer {self.api_key}"
            if self.api_key is not None and path not in ("/", "/api/version") and not authorized:
                return _error(flavor, 401, "invalid api key")
            if self.delay_s and path in _CHAT_PATHS:
                await asyncio.sleep(self.delay_s)
            response: Response = await call_next(request)
            return response

        @app.get("/")
        async def root() -> Response:
            return PlainTextResponse("Ollama is running")

        @app.get("/api/version")
        async def version() -> dict[str, str]:
            return {"version": "0.0.0-fake"}

        @app.get("/api/tags")
        async def tags() -> dict[str, Any]:
            return {
                "models": [
                    {
                        "name": name,
                        "model": name,
                        "modified_at": "2024-01-01T00:00:00Z",
                        "size": 1000,
                        "digest": hashlib.sha256(name.encode()).hexdigest(),
                        "details": {
                            "format": "gguf",
                            "family": "fake",
                            "parameter_size": "1M",
                            "quantization_level": "Q4_0",
                        },
                    }
                    for name in self.models or []
                ]
            }

        @app.post("/api/chat")
        async def ollama_chat(request: Request) -> Response:
            body = await _json(request)
            if isinstance(body, Response):
                return _as_flavor(body, "ollama")
            model = body.get("model")
            if not model:
                return _error("ollama", 400, "model is required")
            if not self._known(model):
                return _error("ollama", 404, f'model "{model}" not found, try pulling it first')
            messages = body.get("messages") or []
            options = body.get("options") or {}
            reply, text, finish, usage = self._answer(
                messages, options.get("num_predict"), request.state.generation
            )
            calls = [
                {"function": {"name": c.name, "arguments": c.arguments}} for c in reply.tool_calls
            ]
            stats = {
                "total_duration": 1000,
                "load_duration": 10,
                "prompt_eval_count": usage[0],
                "prompt_eval_duration": 100,
                "eval_count": usage[1],
                "eval_duration": 500,
            }
            created = "2024-01-01T00:00:00.000000Z"
            if body.get("stream", True) is False:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if calls:
                    message["tool_calls"] = calls
                return JSONResponse(
                    {
                        "model": model,
                        "created_at": created,
                        "message": message,
                        "done": True,
                        "done_reason": finish,
                        **stats,
                    }
                )

            def lines() -> Iterator[bytes]:
                for piece in _pieces(text):
                    yield _ndjson(
                        {
                            "model": model,
                            "created_at": created,
                            "message": {"role": "assistant", "content": piece},
                            "done": False,
                        }
                    )
                if calls:
                    yield _ndjson(
                        {
                            "model": model,
                            "created_at": created,
                            "message": {"role": "assistant", "content": "", "tool_calls": calls},
                            "done": False,
                        }
                    )
                yield _ndjson(
                    {
                        "model": model,
                        "created_at": created,
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        "done_reason": finish,
                        **stats,
                    }
                )

            return StreamingResponse(_aiter(lines()), media_type="application/x-ndjson")

        @app.post("/api/embed")
        async def ollama_embed(request: Request) -> Response:
            body = await _json(request)
            if isinstance(body, Response):
                return _as_flavor(body, "ollama")
            model = body.get("model")
            if not model:
                return _error("ollama", 400, "model is required")
            if not self._known(model):
                return _error("ollama", 404, f'model "{model}" not found, try pulling it first')
            inputs = body.get("input", "")
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            if not all(isinstance(t, str) for t in texts):
                return _error("ollama", 400, "input must be a string or a list of strings")
            dimension = int(body.get("dimensions") or self.dimension)
            return JSONResponse(
                {
                    "model": model,
                    "embeddings": [fake_embedding(t, dimension) for t in texts],
                    "total_duration": 1000,
                    "load_duration": 10,
                    "prompt_eval_count": sum(_words(t) for t in texts),
                }
            )

        @app.get("/v1/models")
        async def openai_models() -> dict[str, Any]:
            return {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "fake"}
                    for name in self.models or []
                ],
            }

        @app.post("/v1/chat/completions")
        async def openai_chat(request: Request) -> Response:
            body = await _json(request)
            if isinstance(body, Response):
                return body
            model = body.get("model")
            if not model:
                return _error("openai", 400, "you must provide a model parameter")
            if not self._known(model):
                return _error(
                    "openai",
                    404,
                    f"The model `{model}` does not exist or you do not have access to it.",
                    code="model_not_found",
                )
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return _error("openai", 400, "'messages' must be a non-empty array")
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            reply, text, finish, usage = self._answer(messages, limit, request.state.generation)
            completion_id = f"chatcmpl-{uuid.uuid4().hex[:20]}"
            created = int(time.time())
            calls: list[dict[str, Any]] = [
                {
                    "id": c.id or f"call_{uuid.uuid4().hex[:20]}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                }
                for c in reply.tool_calls
            ]
            usage_obj = {
                "prompt_tokens": usage[0],
                "completion_tokens": usage[1],
                "total_tokens": usage[0] + usage[1],
            }
            if not body.get("stream"):
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": text if (text or not calls) else None,
                    "refusal": None,
                }
                if calls:
                    message["tool_calls"] = calls
                return JSONResponse(
                    {
                        "id": completion_id,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": message,
                                "logprobs": None,
                                "finish_reason": finish,
                            }
                        ],
                        "usage": usage_obj,
                        "system_fingerprint": "fp_fake",
                    }
                )
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
                data: dict[str, Any] = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [
                        {
                            "index": 0,
                            "delta": delta,
                            "logprobs": None,
                            "finish_reason": finish_reason,
                        }
                    ],
                }
                if include_usage:
                    data["usage"] = None
                return _sse(data)

            def events() -> Iterator[bytes]:
                yield chunk({"role": "assistant", "content": ""})
                for piece in _pieces(text):
                    yield chunk({"content": piece})
                for index, call in enumerate(calls):
                    arguments = call["function"]["arguments"]
                    half = len(arguments) // 2
                    yield chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {"name": call["function"]["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                    for part in (arguments[:half], arguments[half:]):
                        yield chunk(
                            {"tool_calls": [{"index": index, "function": {"arguments": part}}]}
                        )
                yield chunk({}, finish)
                if include_usage:
                    yield _sse(
                        {
                            "id": completion_id,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": usage_obj,
                        }
                    )
                yield b"data: [DONE]\n\n"

            return StreamingResponse(_aiter(events()), media_type="text/event-stream")

        @app.post("/v1/embeddings")
        async def openai_embeddings(request: Request) -> Response:
            body = await _json(request)
            if isinstance(body, Response):
                return body
            model = body.get("model")
            if not model:
                return _error("openai", 400, "you must provide a model parameter")
            if not self._known(model):
                return _error(
                    "openai",
                    404,
                    f"The model `{model}` does not exist or you do not have access to it.",
                    code="model_not_found",
                )
            inputs = body.get("input")
            texts = [inputs] if isinstance(inputs, str) else inputs
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                return _error("openai", 400, "'input' must be a string or an array of strings")
            dimension = int(body.get("dimensions") or self.dimension)
            as_base64 = body.get("encoding_format") == "base64"
            data = []
            for index, text in enumerate(texts):
                vector = fake_embedding(text, dimension)
                encoded: Any = (
                    base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                    if as_base64
                    else vector
                )
                data.append({"object": "embedding", "index": index, "embedding": encoded})
            tokens = sum(_words(t) for t in texts)
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "model": model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )

        return app

    def _answer(
        self, messages: list[dict[str, Any]], limit: Any, generation: int
    ) -> tuple[Reply, str, str, tuple[int, int]]:
        """The reply to ``messages``: (reply, text after the token limit, finish, usage)."""
        reply = self._next_reply(messages, generation)
        text = reply.text
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        if isinstance(limit, int) and limit > 0 and not reply.tool_calls:
            pieces = _pieces(text)
            if len([p for p in pieces if p.strip()]) > limit:
                text = "".join(pieces[:limit])
                finish = reply.finish_reason or "length"
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = sum(_words(_content_text(m.get("content"))) for m in messages)
        completion = reply.completion_tokens
        if completion is None:
            completion = _words(text) + len(reply.tool_calls)
        return reply, text, finish, (prompt, completion)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


async def _json(request: Request) -> dict[str, Any] | Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error("openai", 400, "the body is not valid JSON")
    if not isinstance(body, dict):
        return _error("openai", 400, "the body must be a JSON object")
    return body


def _as_flavor(response: Response, flavor: Flavor) -> Response:
    if flavor == "openai":
        return response
    detail = json.loads(bytes(response.body))["error"]["message"]
    return _error("ollama", response.status_code, detail)


def _error(
    flavor: Flavor,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    code: str | None = None,
) -> JSONResponse:
    """An error in the API's own shape."""
    if flavor == "ollama":
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status_code=status,
        headers=headers,
    )


def _ndjson(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _aiter(items: Iterator[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item
        await asyncio.sleep(0)  # let each chunk go out on its own
