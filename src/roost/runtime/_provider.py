"""The provider endpoint: the platform over local HTTP, for process-runtime agents.

A process agent (any language) reaches roost's services through ordinary HTTP clients:

* ``POST /v1/chat/completions``, ``POST /v1/embeddings`` and ``GET /v1/models`` speak the
  OpenAI API, so the official OpenAI SDKs (and anything built on them) work unchanged with
  ``base_url = <provider>/v1``;
* ``GET|PUT|DELETE /kv/{key}`` and ``GET /kv?prefix=`` store bytes (``?scope=agent`` for the
  agent-wide store; the default ``session`` scope forks with the session);
* ``POST /vectors/{collection}/upsert|search|delete`` use the agent's vector collections;
* ``POST /tools/{name}``, ``POST /agents/{name}`` and ``POST /progress`` call a tool, another
  agent, or report progress.

One endpoint (one uvicorn server in the running event loop, on ``127.0.0.1`` and a free port)
serves every running process agent. Each invocation gets its own random bearer token
(:meth:`ProviderEndpoint.open_session`), bound to that invocation's
:class:`~roost.runtime.AgentContext`: a request is authenticated by its
``Authorization: Bearer <token>`` header and forwarded to that context, so every call is a
typed bus request recorded in the invocation's session like a Python agent's call. The token
stops working when the invocation ends.

Errors come back in the OpenAI error shape ``{"error": {"message", "type", "param", "code"}}``
with an HTTP status derived from the roost error code (``not_found`` 404, ``invalid_request``
400, ``auth`` 401, ``rate_limited`` 429, ``upstream_error`` 502, ``unavailable`` /
``no_responders`` 503, ``timeout`` 504, anything else 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

import msgspec
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from roost.protocol import (
    ErrorCode,
    InvalidRequestError,
    RoostError,
    VectorItem,
)
from roost.runtime._context import KV, AgentContext
from roost.wire import (
    ChatCompletionRequest,
    EmbeddingRequest,
    assistant_message,
    decode_body,
    encode_vector,
    error_body,
    finish_reason,
    messages_of,
    sse_events,
    status_for,
    stream_chunks,
    tools_of,
    usage_of,
)

log = logging.getLogger("roost.provider")

T = TypeVar("T")


class AuthError(RoostError):
    """A provider request without a valid per-invocation bearer token."""

    code = ErrorCode.AUTH


class _UpsertIn(msgspec.Struct):
    items: list[VectorItem]


class _SearchIn(msgspec.Struct):
    vector: list[float]
    k: int = 5
    where: dict[str, Any] = {}


class _DeleteIn(msgspec.Struct):
    ids: list[str]


class _AgentCallIn(msgspec.Struct):
    input: Any = None
    timeout_s: float = 300.0


# --- the endpoint -------------------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the host process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ProviderEndpoint:
    """The local HTTP endpoint process agents use to reach the platform (see module doc).

    ``start()`` is idempotent and safe to call concurrently; ``stop()`` may be called whether
    or not the endpoint was started. ``port=0`` picks a free port.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.app = self._build_app()
        self._sessions: dict[str, AgentContext] = {}
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._url = ""
        self._lock = asyncio.Lock()

    # --- lifecycle --------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """The endpoint's root URL (``http://127.0.0.1:<port>``); the endpoint must be started."""
        if not self._url:
            raise RuntimeError("the provider endpoint is not started")
        return self._url

    @property
    def api_base(self) -> str:
        """The OpenAI ``base_url`` of the endpoint (``<url>/v1``)."""
        return self.url + "/v1"

    async def start(self, timeout: float = 10.0) -> None:
        """Serve on ``host``:``port`` in the running event loop (no-op when already serving)."""
        async with self._lock:
            if self._server is not None:
                return
            # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets of
            # that proto, and without it keep-alive requests stall ~40 ms (Nagle/delayed ACK)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self.port))
            except OSError as exc:
                sock.close()
                raise RuntimeError(
                    f"provider endpoint cannot listen on {self.host}:{self.port}: {exc}"
                ) from exc
            port = sock.getsockname()[1]
            config = uvicorn.Config(
                self.app,
                log_config=None,
                access_log=False,
                lifespan="off",
                ws="none",
                timeout_graceful_shutdown=3,
            )
            server = _EmbeddedServer(config)
            task = asyncio.get_running_loop().create_task(
                server.serve(sockets=[sock]), name="roost-provider"
            )
            deadline = time.monotonic() + timeout
            while not server.started:
                if task.done():
                    sock.close()
                    failure = task.exception()
                    raise RuntimeError(
                        f"provider endpoint failed to start: {failure!r}"
                    ) from failure
                if time.monotonic() > deadline:
                    server.force_exit = server.should_exit = True
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                    sock.close()
                    raise RuntimeError(f"provider endpoint did not start within {timeout:g}s")
                await asyncio.sleep(0.01)
            self._server, self._task = server, task
            self._url = f"http://{self.host}:{port}"
            log.info("provider endpoint serving on %s", self._url)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (in-flight requests get a short grace period) and forget all tokens."""
        async with self._lock:
            server, task = self._server, self._task
            self._server, self._task, self._url = None, None, ""
            self._sessions.clear()
            if server is None or task is None:
                return
            server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                server.force_exit = True
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except Exception:
                log.exception("provider endpoint failed while stopping")

    async def __aenter__(self) -> ProviderEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- per-invocation tokens ----------------------------------------------------------

    def open_session(self, ctx: AgentContext) -> str:
        """A fresh bearer token whose requests are served through ``ctx``."""
        token = "roost-" + secrets.token_urlsafe(32)
        self._sessions[token] = ctx
        return token

    def close_session(self, token: str) -> None:
        """Revoke ``token`` (unknown tokens are ignored)."""
        self._sessions.pop(token, None)

    @contextlib.contextmanager
    def session(self, ctx: AgentContext) -> Iterator[str]:
        """``with endpoint.session(ctx) as token:`` — a token valid inside the block."""
        token = self.open_session(ctx)
        try:
            yield token
        finally:
            self.close_session(token)

    @property
    def active_sessions(self) -> int:
        """How many tokens are currently valid."""
        return len(self._sessions)

    def _context_of(self, request: Request) -> AgentContext:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing bearer token: send 'Authorization: Bearer <api_key>'")
        ctx = self._sessions.get(token.strip())
        if ctx is None:
            raise AuthError("invalid or expired api key (tokens are valid for one invocation)")
        return ctx

    # --- the HTTP app -------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(
            title="roost provider",
            docs_url=None,
            redoc_url=None,
            openapi_url=None,
        )
        app.add_exception_handler(RoostError, _roost_error_handler)
        app.add_exception_handler(StarletteHTTPException, _http_error_handler)
        app.add_exception_handler(Exception, _internal_error_handler)

        app.add_api_route("/health", self._health, methods=["GET"])
        app.add_api_route("/v1/models", self._models, methods=["GET"])
        app.add_api_route("/v1/chat/completions", self._chat, methods=["POST"])
        app.add_api_route("/v1/embeddings", self._embeddings, methods=["POST"])
        app.add_api_route("/kv", self._kv_list, methods=["GET"])
        app.add_api_route("/kv/{key:path}", self._kv_get, methods=["GET"])
        app.add_api_route("/kv/{key:path}", self._kv_put, methods=["PUT"])
        app.add_api_route("/kv/{key:path}", self._kv_delete, methods=["DELETE"])
        app.add_api_route("/vectors/{collection}/upsert", self._vec_upsert, methods=["POST"])
        app.add_api_route("/vectors/{collection}/search", self._vec_search, methods=["POST"])
        app.add_api_route("/vectors/{collection}/delete", self._vec_delete, methods=["POST"])
        app.add_api_route("/tools/{name}", self._tool, methods=["POST"])
        app.add_api_route("/agents/{name}", self._agent, methods=["POST"])
        app.add_api_route("/progress", self._progress, methods=["POST"])
        return app

    async def _health(self, request: Request) -> Response:
        return _json({"status": "ok", "sessions": len(self._sessions)})

    async def _models(self, request: Request) -> Response:
        ctx = self._context_of(request)
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "roost"}
            for model in dict.fromkeys(m for m in (ctx.chat_model, ctx.embedding_model) if m)
        ]
        return _json({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        ctx = self._context_of(request)
        body = decode_body(await request.body(), ChatCompletionRequest)
        if body.n not in (None, 1):
            raise InvalidRequestError("only n=1 is supported")
        tools = [] if body.tool_choice == "none" else tools_of(body.tools or [])
        model = "" if body.model in ("", "default") else body.model
        result = await ctx.infer(
            messages_of(body.messages),
            model=model,
            tools=tools,
            temperature=body.temperature,
            max_tokens=body.max_completion_tokens or body.max_tokens,
            stream=bool(body.stream),
        )
        completion_id = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        model_name = result.model or model or ctx.chat_model or "default"
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            chunks = stream_chunks(result, completion_id, created, model_name, include_usage)
            return StreamingResponse(
                sse_events(chunks),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return _json(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model_name,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": assistant_message(result),
                        "finish_reason": finish_reason(result),
                        "logprobs": None,
                    }
                ],
                "usage": usage_of(result),
            }
        )

    async def _embeddings(self, request: Request) -> Response:
        ctx = self._context_of(request)
        body = decode_body(await request.body(), EmbeddingRequest)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        if not inputs:
            raise InvalidRequestError("'input' must not be empty")
        model = "" if body.model in ("", "default") else body.model
        result = await ctx.embed_result(inputs, model=model)
        if body.dimensions is not None and result.vectors:
            actual = len(result.vectors[0])
            if body.dimensions != actual:
                raise InvalidRequestError(
                    f"this model gives {actual}-dimensional vectors; "
                    f"dimensions={body.dimensions} is not supported"
                )
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": encode_vector(vector, body.encoding_format),
            }
            for i, vector in enumerate(result.vectors)
        ]
        prompt_tokens = result.usage.prompt_tokens
        return _json(
            {
                "object": "list",
                "data": data,
                "model": result.model or model or ctx.embedding_model or "default",
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            }
        )

    # --- kv -----------------------------------------------------------------------------

    def _kv(self, request: Request) -> KV:
        ctx = self._context_of(request)
        scope = request.query_params.get("scope", "session")
        if scope == "session":
            return ctx.kv
        if scope == "agent":
            return ctx.kv.shared()
        raise InvalidRequestError(f"scope must be 'session' or 'agent', not {scope!r}")

    async def _kv_list(self, request: Request) -> Response:
        kv = self._kv(request)
        return _json(await kv.list(request.query_params.get("prefix", "")))

    async def _kv_get(self, request: Request) -> Response:
        kv = self._kv(request)
        key = request.path_params["key"]
        value = await kv.get(key)
        if value is None:
            return _error(404, f"no value stored under key {key!r}", ErrorCode.NOT_FOUND)
        return Response(value, media_type="application/octet-stream")

    async def _kv_put(self, request: Request) -> Response:
        kv = self._kv(request)
        commit = await kv.put(request.path_params["key"], await request.body())
        return _json({"commit": commit})

    async def _kv_delete(self, request: Request) -> Response:
        kv = self._kv(request)
        commit = await kv.delete(request.path_params["key"])
        return _json({"commit": commit})

    # --- vectors ------------------------------------------------------------------------

    async def _vec_upsert(self, request: Request) -> Response:
        ctx = self._context_of(request)
        body = decode_body(await request.body(), _UpsertIn)
        count = await ctx.vectors.upsert(request.path_params["collection"], body.items)
        return _json({"count": count})

    async def _vec_search(self, request: Request) -> Response:
        ctx = self._context_of(request)
        body = decode_body(await request.body(), _SearchIn)
        hits = await ctx.vectors.search(
            request.path_params["collection"], body.vector, k=body.k, where=body.where
        )
        return _json({"hits": msgspec.to_builtins(hits)})

    async def _vec_delete(self, request: Request) -> Response:
        ctx = self._context_of(request)
        body = decode_body(await request.body(), _DeleteIn)
        count = await ctx.vectors.delete(request.path_params["collection"], body.ids)
        return _json({"count": count})

    # --- tools, agents, progress ----------------------------------------------------------

    async def _tool(self, request: Request) -> Response:
        ctx = self._context_of(request)
        arguments = decode_body(await request.body() or b"{}", dict[str, Any])
        result = await ctx.call_tool(request.path_params["name"], arguments)
        return _json({"output": result.output, "is_error": result.is_error})

    async def _agent(self, request: Request) -> Response:
        ctx = self._context_of(request)
        body = decode_body(await request.body() or b"{}", _AgentCallIn)
        output = await ctx.call_agent(
            request.path_params["name"], body.input, timeout=body.timeout_s
        )
        return _json({"output": output})

    async def _progress(self, request: Request) -> Response:
        ctx = self._context_of(request)
        body = decode_body(await request.body(), dict[str, Any])
        message = body.pop("message", "")
        if not isinstance(message, str) or not message:
            raise InvalidRequestError("'message' must be a non-empty string")
        await ctx.emit(message, **body)
        return _json({"ok": True})


# --- helpers --------------------------------------------------------------------------------


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json")


def _error(status: int, message: str, code: str) -> Response:
    response = _json(error_body(status, message, code), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _roost_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RoostError)
    status = status_for(exc)
    if status >= 500:
        log.warning("provider %s %s failed: %s", request.method, request.url.path, exc)
    return _error(status, exc.message, exc.code)


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = ErrorCode.NOT_FOUND if exc.status_code == 404 else ErrorCode.INVALID_REQUEST
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    else:
        message = str(exc.detail)
    response = _error(exc.status_code, message, code)
    response.headers.update(exc.headers or {})
    return response


async def _internal_error_handler(request: Request, exc: Exception) -> Response:
    # (uvicorn logs the traceback: Starlette re-raises after this response is sent)
    return _error(500, f"internal error: {type(exc).__name__}: {exc}", ErrorCode.INTERNAL)


__all__ = ["AuthError", "ProviderEndpoint", "status_for"]
