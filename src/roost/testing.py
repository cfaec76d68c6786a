"""Unit-test agent code without a server, the way temporalio's ``ActivityEnvironment`` tests
activities.

:class:`AgentTestEnvironment` gives an agent a real :class:`~roost.AgentContext` whose
service calls are answered in memory: chat by a :class:`ScriptedModel` (replies in order),
embeddings by a function, KV and vectors by small in-memory stores, tools by plain Python
functions (validated against their signature like deployed tools), other agents by
functions, and ``ctx.ask`` by scripted answers. Every call crosses the same wire encoding as
in a deployment, so a body that would not serialise fails here too. Each call is recorded in
:attr:`AgentTestEnvironment.calls` and each event in :attr:`AgentTestEnvironment.events`::

    from roost.testing import AgentTestEnvironment, ScriptedModel

    async def test_my_agent():
        env = AgentTestEnvironment(model=ScriptedModel(["Paris."]))
        assert await env.run(my_agent.run, "Capital of France?") == {"answer": "Paris."}
        assert env.model.requests[0].messages[-1].content.endswith("France?")
"""

from __future__ import annotations

import inspect
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from roost.protocol import (
    AgentCall,
    AgentCallResult,
    ChatMessage,
    ChatRequest,
    ChatResult,
    EmbedRequest,
    EmbedResult,
    EventType,
    InvalidRequestError,
    InvokeMessage,
    KvDelete,
    KvGet,
    KvList,
    KvPut,
    KvValue,
    NoRespondersError,
    NotFoundError,
    ToolCall,
    ToolRequest,
    ToolResult,
    Usage,
    VecDelete,
    VecResult,
    VecSearch,
    VectorHit,
    VectorItem,
    VecUpsert,
    from_body,
    to_body,
)
from roost.runtime import AgentContext

Reply = str | ChatMessage | list[ToolCall] | Callable[[ChatRequest], "str | ChatMessage"]
"""One scripted model reply: text, a whole message, tool calls, or a function of the request."""


@dataclass(frozen=True)
class Call:
    """One service call an agent made: ``service``, ``op`` and the request body."""

    service: str
    op: str
    body: dict[str, Any]


class ScriptedModel:
    """A chat model that answers with ``replies`` in order and keeps every request.

    A reply may be a string (the assistant's text), a :class:`~roost.ChatMessage`, a list of
    :class:`~roost.ToolCall` (the model calls tools), or a function of the
    :class:`~roost.protocol.ChatRequest` returning one of the first two. Running out of
    replies is an error naming how many were scripted.
    """

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self._replies = list(replies)
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        if len(self.requests) > len(self._replies):
            raise InvalidRequestError(
                f"the scripted model has {len(self._replies)} replies and got call "
                f"{len(self.requests)}: {request.messages[-1].content[:80]!r}"
            )
        reply = self._replies[len(self.requests) - 1]
        if callable(reply):
            reply = reply(request)
        if isinstance(reply, str):
            message = ChatMessage(role="assistant", content=reply)
        elif isinstance(reply, ChatMessage):
            message = reply
        else:
            message = ChatMessage(role="assistant", tool_calls=list(reply))
        finish = "tool_calls" if message.tool_calls else "stop"
        usage = Usage(sum(len(m.content.split()) for m in request.messages),
                      len(message.content.split()))  # fmt: skip
        return ChatResult(message=message, model=request.model, finish_reason=finish, usage=usage)


def tool_call(name: str, /, **arguments: Any) -> ToolCall:
    """A :class:`~roost.ToolCall` for a :class:`ScriptedModel` reply."""
    return ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=name, arguments=arguments)


class AgentTestEnvironment:
    """An in-memory platform for one agent's code: see the module docs.

    Args:
        model: answers ``ctx.infer`` (a :class:`ScriptedModel`, or any function of the
            request returning a :class:`~roost.ChatResult`).
        embed: turns one text into a vector, for ``ctx.embed``.
        tools: tool functions by name, for ``ctx.tool`` (and the chat runtime's tool specs).
        agents: functions of the input by agent name, for ``ctx.call_agent``.
        answers: the answers ``ctx.ask`` gets, in order.
        history: the branch's earlier ``(input, output)`` pairs (``ctx.history``).
        agent, session, branch: who the run is.
        now: the clock of ``ctx.now()`` (seconds since the epoch; fixed, like a replay).
        seed: the seed of ``ctx.random()``.
    """

    def __init__(
        self,
        *,
        model: Callable[[ChatRequest], ChatResult] | None = None,
        embed: Callable[[str], Sequence[float]] | None = None,
        tools: Mapping[str, Callable[..., Any]] | None = None,
        agents: Mapping[str, Callable[[Any], Any]] | None = None,
        answers: Iterable[str] = (),
        history: Sequence[tuple[Any, Any]] = (),
        agent: str = "test-agent",
        session: str = "test-session",
        branch: str = "main",
        now: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
        seed: int = 0,
    ) -> None:
        from roost.tools import tool_from_function  # pydantic: only when testing tools

        self.model = model
        self._embed = embed
        self._tools = {
            name: tool_from_function(fn, name=name) for name, fn in (tools or {}).items()
        }
        self._agents = dict(agents or {})
        self._answers = list(answers)
        self.history = list(history)
        self.agent, self.session, self.branch = agent, session, branch
        self._now = now
        self._random = random.Random(seed)
        self.calls: list[Call] = []
        self.events: list[tuple[EventType, dict[str, Any]]] = []
        self.questions: list[str] = []
        self.kv: dict[tuple[str, str], bytes] = {}
        """The KV store: ``(scope, key) -> value`` (scope ``session`` or ``agent``)."""
        self.vectors: dict[str, dict[str, VectorItem]] = {}
        """Vector collections: ``collection -> id -> item``."""
        self.usage = Usage()
        self._commits = 0

    def context(self, input: Any = None) -> AgentContext:
        """A fresh :class:`~roost.AgentContext` for a run on ``input``."""
        invocation = InvokeMessage(
            agent=self.agent, input=input, session=self.session, branch=self.branch
        )
        return AgentContext(invocation, self, history=list(self.history))

    async def run(self, fn: Callable[[AgentContext, Any], Any], input: Any = None) -> Any:
        """Run agent function ``fn(ctx, input)`` (sync or async) and return its output."""
        result = fn(self.context(input), input)
        return await result if inspect.isawaitable(result) else result

    # --- the Dispatcher protocol ------------------------------------------------------

    async def call(
        self, service: str, op: str, body: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        """Answer one service call in memory (the wire shapes of a deployment)."""
        self.calls.append(Call(service, op, body))
        handler = getattr(self, f"_{service}_{op}", None)
        if handler is None:
            raise NoRespondersError(f"the test environment does not serve {service}.{op}")
        reply: Any = handler(body)
        if inspect.isawaitable(reply):
            reply = await reply
        out: dict[str, Any] = to_body(reply)
        return out

    async def emit(self, type: EventType, data: dict[str, Any]) -> None:
        self.events.append((type, data))

    def now(self) -> float:
        return self._now

    def random(self) -> random.Random:
        return self._random

    async def step(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        result = fn(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    async def ask(self, question: str, timeout: float) -> str:
        self.questions.append(question)
        if len(self.questions) > len(self._answers):
            raise InvalidRequestError(
                f"the agent asked {question!r} but the test scripted "
                f"{len(self._answers)} answers (AgentTestEnvironment(answers=[...]))"
            )
        return self._answers[len(self.questions) - 1]

    # --- services ---------------------------------------------------------------------

    def _infer_chat(self, body: dict[str, Any]) -> ChatResult:
        if self.model is None:
            raise NoRespondersError("no model: AgentTestEnvironment(model=ScriptedModel([...]))")
        result = self.model(from_body(body, ChatRequest))
        self.usage = Usage(
            self.usage.prompt_tokens + result.usage.prompt_tokens,
            self.usage.completion_tokens + result.usage.completion_tokens,
        )
        return result

    def _embed_embed(self, body: dict[str, Any]) -> EmbedResult:
        if self._embed is None:
            raise NoRespondersError("no embedding function: AgentTestEnvironment(embed=...)")
        request = from_body(body, EmbedRequest)
        vectors = [list(map(float, self._embed(text))) for text in request.inputs]
        return EmbedResult(vectors, request.model, len(vectors[0]) if vectors else 0)

    def _commit(self) -> str:
        self._commits += 1
        return f"commit-{self._commits}"

    def _kv_get(self, body: dict[str, Any]) -> KvValue:
        get = from_body(body, KvGet)
        value = self.kv.get((get.scope, get.key))
        return KvValue(found=value is not None, value=value)

    def _kv_put(self, body: dict[str, Any]) -> KvValue:
        put = from_body(body, KvPut)
        self.kv[(put.scope, put.key)] = put.value
        return KvValue(commit=self._commit())

    def _kv_delete(self, body: dict[str, Any]) -> KvValue:
        delete = from_body(body, KvDelete)
        self.kv.pop((delete.scope, delete.key), None)
        return KvValue(commit=self._commit())

    def _kv_list(self, body: dict[str, Any]) -> KvValue:
        listing = from_body(body, KvList)
        keys = sorted(k for s, k in self.kv if s == listing.scope and k.startswith(listing.prefix))
        return KvValue(keys=keys)

    def _vec_upsert(self, body: dict[str, Any]) -> VecResult:
        upsert = from_body(body, VecUpsert)
        collection = self.vectors.setdefault(upsert.collection, {})
        for item in upsert.items:
            collection[item.id] = item
        return VecResult(count=len(upsert.items))

    def _vec_search(self, body: dict[str, Any]) -> VecResult:
        search = from_body(body, VecSearch)
        items = self.vectors.get(search.collection, {}).values()
        matching = [
            item for item in items
            if all(item.metadata.get(k) == v for k, v in search.where.items())
        ]  # fmt: skip
        hits = sorted(
            (VectorHit(i.id, math.dist(i.vector, search.vector), i.metadata, i.text)
             for i in matching),
            key=lambda hit: hit.distance,
        )  # fmt: skip
        return VecResult(hits=hits[: search.k])

    def _vec_delete(self, body: dict[str, Any]) -> VecResult:
        delete = from_body(body, VecDelete)
        collection = self.vectors.get(delete.collection, {})
        return VecResult(count=sum(collection.pop(i, None) is not None for i in delete.ids))

    async def _tool_call(self, body: dict[str, Any]) -> ToolResult:
        request = from_body(body, ToolRequest)
        tool = self._tools.get(request.name)
        if tool is None:
            raise NotFoundError(f"no tool {request.name!r} (tools: {sorted(self._tools)})")
        try:
            return ToolResult(output=await tool.invoke(request.arguments))
        except InvalidRequestError:
            raise
        except Exception as exc:  # a failing tool reports to the model, as deployed
            return ToolResult(output=f"{type(exc).__name__}: {exc}", is_error=True)

    def _tool_specs(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"tools": [to_body(tool.spec) for tool in self._tools.values()]}

    async def _agent_call(self, body: dict[str, Any]) -> AgentCallResult:
        call = from_body(body, AgentCall)
        fn = self._agents.get(call.agent)
        if fn is None:
            raise NotFoundError(f"no agent {call.agent!r} (agents: {sorted(self._agents)})")
        output: Any = fn(call.input)
        if isinstance(output, Awaitable):
            output = await output
        return AgentCallResult(output=output, session=f"{self.session}-{call.agent}")


__all__ = ["AgentTestEnvironment", "Call", "Reply", "ScriptedModel", "tool_call"]
