"""The agent SDK: what agent code sees of the platform.

Every method is a typed request over the bus with a timeout (through a
:class:`~roost.runtime.Dispatcher`), recorded in the session DAG.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from roost.protocol import (
    AgentCall,
    AgentCallResult,
    ChatMessage,
    ChatRequest,
    ChatResult,
    EmbedRequest,
    EmbedResult,
    ErrorCode,
    InvokeMessage,
    KvDelete,
    KvGet,
    KvList,
    KvPut,
    KvScope,
    KvValue,
    ToolRequest,
    ToolResult,
    ToolSpec,
    VecDelete,
    VecResult,
    VecSearch,
    VectorHit,
    VectorItem,
    VecUpsert,
    from_body,
    to_body,
)

if TYPE_CHECKING:  # the dispatcher's module brings the bus and stores: not for agent code
    from roost.runtime._dispatch import Dispatcher

T = TypeVar("T")


class KV:
    """Versioned key-value storage of this agent.

    ``scope="session"`` (default) is private to the session and branch, and forks with it: a
    branch forked from an earlier node sees the values as they were there. ``scope="agent"``
    is shared by every session of the agent.
    """

    def __init__(self, ctx: AgentContext, scope: KvScope = "session") -> None:
        self._ctx = ctx
        self.scope: KvScope = scope

    def shared(self) -> KV:
        """The agent-wide store (shared by all sessions)."""
        return KV(self._ctx, "agent")

    async def _call(self, op: str, body: Any) -> KvValue:
        raw = await self._ctx._call("kv", op, to_body(body))
        return from_body(raw, KvValue)

    async def get(self, key: str, default: bytes | None = None) -> bytes | None:
        """The value stored under ``key``, or ``default`` when there is none.

        Raises:
            ServiceTimeoutError, ServiceUnavailableError: the KV service did not answer.
        """
        result = await self._call("get", KvGet(key=key, scope=self.scope))
        return result.value if result.found else default

    async def get_text(self, key: str, default: str | None = None) -> str | None:
        """:meth:`get`, decoded as UTF-8."""
        value = await self.get(key)
        return value.decode() if value is not None else default

    async def put(self, key: str, value: bytes | str) -> str:
        """Store ``value`` under ``key``; returns the new KV commit id."""
        data = value.encode() if isinstance(value, str) else value
        return (await self._call("put", KvPut(key=key, value=data, scope=self.scope))).commit

    async def delete(self, key: str) -> str:
        """Delete ``key`` (a versioned delete); returns the new KV commit id."""
        return (await self._call("delete", KvDelete(key=key, scope=self.scope))).commit

    async def list(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``, sorted."""
        return (await self._call("list", KvList(prefix=prefix, scope=self.scope))).keys


class Vectors:
    """Vector collections of this agent (dimension fixed by the first vectors stored)."""

    def __init__(self, ctx: AgentContext) -> None:
        self._ctx = ctx

    async def upsert(self, collection: str, items: Sequence[VectorItem]) -> int:
        """Insert or replace ``items`` (by id) in ``collection``; returns how many.

        Raises:
            InvalidRequestError: a vector's dimension differs from the collection's.
        """
        body = to_body(VecUpsert(collection=collection, items=list(items)))
        return from_body(await self._ctx._call("vec", "upsert", body), VecResult).count

    async def search(
        self,
        collection: str,
        vector: Sequence[float],
        k: int = 5,
        where: dict[str, Any] | None = None,
    ) -> list[VectorHit]:
        """The ``k`` items nearest to ``vector``, nearest first; ``where`` keeps only items
        whose metadata has those values.

        Raises:
            InvalidRequestError: the dimension differs from the collection's, or ``k`` is
                out of range.
        """
        body = to_body(
            VecSearch(collection=collection, vector=list(vector), k=k, where=where or {})
        )
        return from_body(await self._ctx._call("vec", "search", body), VecResult).hits

    async def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Delete the items with ``ids``; returns how many existed."""
        body = to_body(VecDelete(collection=collection, ids=list(ids)))
        return from_body(await self._ctx._call("vec", "delete", body), VecResult).count


class AgentContext:
    """Handed to agent code with its input: ``async def run(ctx, input): ...``.

    **Durable runs replay agent code.** When a run is durable (the default), a crash of the
    process running it resumes the run elsewhere by running the agent function again from
    the top, with every completed ``ctx`` call answered from the run's history instead of
    being made again. So agent code must make the same ``ctx`` calls in the same order when
    replayed: take the time from :meth:`now`, randomness from :meth:`random`, and wrap
    anything else with side effects or varying results (reading files, calling an HTTP API,
    ``uuid4()``) in :meth:`step`, which runs it once and records the result.
    """

    def __init__(
        self,
        invocation: InvokeMessage,
        dispatcher: Dispatcher,
        *,
        chat_model: str = "",
        embedding_model: str = "",
        request_timeout_s: float = 30.0,
        infer_timeout_s: float = 120.0,
        history: list[tuple[Any, Any]] | None = None,
    ) -> None:
        self.invocation = invocation
        self.dispatcher = dispatcher
        self.chat_model = chat_model
        self.embedding_model = embedding_model
        self.request_timeout_s = request_timeout_s
        self.infer_timeout_s = infer_timeout_s
        self.history: list[tuple[Any, Any]] = history or []
        """Earlier (input, output) pairs of this session branch, oldest first."""
        self.kv = KV(self)
        self.vectors = Vectors(self)
        self.log = logging.getLogger(f"roost.agent.{invocation.agent}")

    @property
    def agent(self) -> str:
        """The name of the agent this run belongs to."""
        return self.invocation.agent

    @property
    def session(self) -> str:
        """The id of the run's session."""
        return self.invocation.session

    @property
    def branch(self) -> str:
        """The session branch the run appends to."""
        return self.invocation.branch

    @property
    def invocation_id(self) -> str:
        """The id of this run's invoke message (the first node the run records)."""
        return self.invocation.id

    async def _call(
        self, service: Any, op: str, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        return await self.dispatcher.call(
            service, op, body, timeout=timeout or self.request_timeout_s
        )

    async def infer(
        self,
        prompt: str | Sequence[ChatMessage],
        *,
        system: str = "",
        model: str = "",
        tools: Sequence[ToolSpec] = (),
        temperature: float | None = None,
        max_tokens: int | None = None,
        stream: bool = False,
        timeout: float | None = None,
    ) -> ChatResult:
        """Ask a chat model.

        Args:
            prompt: a user message, or the whole conversation as messages.
            system: a system message put first.
            model: a registered model name; "" is the agent's chat model.
            tools: tools the model may call; its calls come back in
                ``result.message.tool_calls`` (run them with :meth:`tool`).
            temperature, max_tokens: sampling options (the model's defaults when None).
            stream: publish the reply's tokens as events while it is generated.
            timeout: seconds to wait (default: the platform's inference timeout).

        Returns:
            The reply message, the finish reason and token usage.

        Raises:
            NotFoundError: no such model.
            InvalidRequestError: the request is invalid for the model (e.g. too long).
            ServiceTimeoutError, ServiceUnavailableError, UpstreamError: transient
                failures (``retryable``); a durable run retries them itself.
        """
        if isinstance(prompt, str):
            messages = [ChatMessage(role="user", content=prompt)]
        else:
            messages = list(prompt)
        if system:
            messages.insert(0, ChatMessage(role="system", content=system))
        request = ChatRequest(
            model=model or self.chat_model,
            messages=messages,
            tools=list(tools),
            temperature=temperature,
            max_tokens=max_tokens,
            stream=stream,
        )
        body = await self._call("infer", "chat", to_body(request), timeout or self.infer_timeout_s)
        return from_body(body, ChatResult)

    async def embed(self, texts: str | Sequence[str], *, model: str = "") -> list[list[float]]:
        """Embed one text or many.

        Returns:
            One vector per text, in order.

        Raises:
            NotFoundError: no such model; the transient errors of :meth:`infer`.
        """
        return (await self.embed_result(texts, model=model)).vectors

    async def embed_result(self, texts: str | Sequence[str], *, model: str = "") -> EmbedResult:
        """Like :meth:`embed`, with the model's name, the dimension and token usage."""
        inputs = [texts] if isinstance(texts, str) else list(texts)
        request = EmbedRequest(model=model or self.embedding_model, inputs=inputs)
        body = await self._call("embed", "embed", to_body(request), self.infer_timeout_s)
        return from_body(body, EmbedResult)

    async def tool(self, name: str, /, **arguments: Any) -> Any:
        """Call the agent's tool ``name`` with keyword ``arguments``.

        Returns:
            The tool's output.

        Raises:
            RoostError: the tool failed (code ``tool_failed``, the tool's message).
            NotFoundError: the agent has no such tool.
            InvalidRequestError: the arguments do not fit the tool's signature.
        """
        result = await self.call_tool(name, arguments)
        if result.is_error:
            from roost.protocol import RoostError

            raise RoostError(f"tool {name!r} failed: {result.output}", code=ErrorCode.TOOL_FAILED)
        return result.output

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Call tool ``name`` and return its result as is: a failing tool gives
        ``is_error=True`` and its message instead of raising (what a model is shown).

        Raises:
            NotFoundError, InvalidRequestError: as :meth:`tool`.
        """
        body = await self._call(
            "tool", "call", to_body(ToolRequest(name=name, arguments=arguments))
        )
        return from_body(body, ToolResult)

    async def tool_specs(self) -> list[ToolSpec]:
        """The agent's tools as a model is offered them (name, description, JSON schema)."""
        body = await self._call("tool", "specs", {})
        return [from_body(spec, ToolSpec) for spec in body.get("tools", [])]

    async def call_agent(self, agent: str, input: Any, *, timeout: float = 300.0) -> Any:
        """Run another deployed agent on ``input`` (in a session of its own).

        Returns:
            That run's output.

        Raises:
            NotFoundError: no such agent.
            AgentError: that run failed, or the chain of agent calls is too deep.
            ServiceTimeoutError: no result within ``timeout`` seconds.
        """
        depth = int(self.invocation.metadata.get("depth", 0)) + 1
        call = AgentCall(agent=agent, input=input, timeout_s=timeout, depth=depth)
        body = await self._call("agent", "call", to_body(call), timeout)
        return from_body(body, AgentCallResult).output

    async def emit(self, message: str, **data: Any) -> None:
        """Report progress: shown live by ``roost agent run`` and kept in the session.
        ``data`` must be JSON-serialisable."""
        await self.dispatcher.emit("progress", {"message": message, **data})

    def now(self) -> datetime:
        """The current time (UTC). In a durable run, replay sees the time of the first run."""
        return datetime.fromtimestamp(self.dispatcher.now(), UTC)

    def random(self) -> random.Random:
        """A random generator. In a durable run it is seeded by the run, so replay repeats
        the same numbers."""
        return self.dispatcher.random()

    @overload
    async def step(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T: ...

    @overload
    async def step(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...

    async def step(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (sync or async) once and return its result.

        In a durable run the result is recorded: replay returns it without calling ``fn``
        again. ``fn`` must be a module-level function of the agent (so any worker can find
        it), and its arguments and result must be JSON-serialisable.
        """
        return await self.dispatcher.step(fn, args, kwargs)

    async def ask(self, question: str, *, timeout: float = 3600.0) -> str:
        """Ask a human and wait for the answer (``roost run answer RUN TEXT``).

        The question reaches ``roost agent run`` / ``roost run get`` as an event. A durable
        run waits without holding a worker, and survives restarts while waiting.
        """
        return await self.dispatcher.ask(question, timeout)
