"""The infer and embed services over the memory bus: model resolution, errors, token events,
usage; against the fake LLM server and (marked ``model``) the embedded default models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from fakes import FakeLLMServer, fake_embedding
from roost.bus import Delivery, MemoryBus, Subscription
from roost.engines import EngineSet, default_models
from roost.protocol import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    EmbedRequest,
    EmbedResult,
    EventMessage,
    NotFoundError,
    RequestMessage,
    ResponseMessage,
    RoostError,
    ToolSpec,
    decode,
    from_body,
    subjects,
    to_body,
)
from roost.services import call_service, raise_for_error
from roost.services.embedding import EmbeddingService
from roost.services.inference import InferenceService
from roost.stores._records import ModelRecord


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(models=["fake-chat", "fake-embed"], dimension=8, api_key="sk-1") as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: FakeLLMServer) -> None:
    server.reset()


class Registry:
    """A stand-in for the model registry and the secret store."""

    def __init__(self, models: list[ModelRecord], secrets: dict[str, str]) -> None:
        self.models = {m.name: m for m in models}
        self.secrets = secrets

    async def get(self, name: str) -> ModelRecord:
        model = self.models.get(name)
        if model is None:
            raise NotFoundError(f"unknown model {name!r}")
        return model

    async def get_or_none(self, name: str) -> ModelRecord | None:
        return self.models.get(name)

    async def all(self) -> list[ModelRecord]:
        return list(self.models.values())

    async def secret(self, name: str) -> str | None:
        return self.secrets.get(name)


@pytest.fixture
def registry(server: FakeLLMServer) -> Registry:
    return Registry(
        [
            ModelRecord("chatty", "chat", "openai", "fake-chat", server.openai_url, "openai-key"),
            ModelRecord("llama", "chat", "ollama", "fake-chat", server.ollama_url, "openai-key"),
            ModelRecord(
                "vecs", "embedding", "ollama", "fake-embed", server.ollama_url, "openai-key", 8
            ),
            ModelRecord(
                "vecs-oa", "embedding", "openai", "fake-embed", server.openai_url, "openai-key"
            ),
            ModelRecord(
                "wrong-dim",
                "embedding",
                "openai",
                "fake-embed",
                server.openai_url,
                "openai-key",
                99,
            ),
            ModelRecord(
                "keyless", "chat", "openai", "fake-chat", server.openai_url, "missing-secret"
            ),
        ],
        {"openai-key": "sk-1"},
    )


@pytest.fixture
async def bus(registry: Registry) -> AsyncIterator[MemoryBus]:
    engines = EngineSet(timeout_s=5)
    async with MemoryBus() as bus:
        infer = InferenceService(
            bus,
            engines,
            registry.get,
            registry.secret,
            default_model="chatty",
            list_models=registry.all,
        )
        embed = EmbeddingService(
            bus,
            engines,
            registry.get,
            registry.secret,
            default_model="vecs",
            list_models=registry.all,
        )
        await infer.start()
        await embed.start()
        yield bus  # type: ignore[misc]
        await infer.stop()
        await embed.stop()
    await engines.close()


def chat_request(model: str, text: str, *, stream: bool = False) -> RequestMessage:
    body = ChatRequest(
        model=model, messages=[ChatMessage(role="user", content=text)], stream=stream
    )
    return RequestMessage(
        service="infer",
        op="chat",
        body=to_body(body),
        session="sess-1",
        branch="main",
        agent="writer",
        timeout_s=10,
    )


async def chat(bus: MemoryBus, request: RequestMessage) -> ChatResult:
    return from_body(raise_for_error(await call_service(bus, request)), ChatResult)


async def test_chat_resolves_the_model_and_returns_usage(
    bus: MemoryBus, server: FakeLLMServer
) -> None:
    server.reply("Bonjour!", prompt_tokens=12, completion_tokens=3)
    result = await chat(bus, chat_request("chatty", "Say hello in French"))
    assert result.message.content == "Bonjour!"
    assert result.model == "chatty"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (12, 3)
    sent = server.last("/v1/chat/completions")
    assert sent.model == "fake-chat"
    assert sent.headers["authorization"] == "Bearer sk-1"  # the key from the named secret


async def test_empty_model_uses_the_default(bus: MemoryBus, server: FakeLLMServer) -> None:
    result = await chat(bus, chat_request("", "ping"))
    assert result.model == "chatty"
    assert result.message.content == "echo: ping"


async def test_ollama_model_through_the_service(bus: MemoryBus, server: FakeLLMServer) -> None:
    server.reply_tool_call("lookup", {"q": "roost"})
    request = ChatRequest(
        model="llama",
        messages=[ChatMessage(role="user", content="find roost")],
        tools=[ToolSpec(name="lookup", description="Look something up")],
    )
    body = to_body(request)
    response = await call_service(
        bus, RequestMessage(service="infer", op="chat", body=body, timeout_s=10)
    )
    result = from_body(raise_for_error(response), ChatResult)
    assert result.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in result.message.tool_calls] == [
        ("lookup", {"q": "roost"})
    ]
    assert server.count("/api/chat") == 1


async def test_unknown_model_lists_the_known_ones(bus: MemoryBus) -> None:
    response = await call_service(bus, chat_request("gpt-17", "hi"))
    assert not response.ok and response.error is not None
    assert response.error.code == "not_found" and not response.error.retryable
    assert "'gpt-17'" in response.error.message
    assert "chatty, keyless, llama" in response.error.message
    with pytest.raises(NotFoundError):
        raise_for_error(response)


async def test_resolver_returning_none_is_not_found(registry: Registry) -> None:
    async with MemoryBus() as bus:
        engines = EngineSet()
        service = InferenceService(bus, engines, registry.get_or_none, registry.secret)
        response = await service.handle(chat_request("nope", "hi"))
        assert response.error is not None and response.error.code == "not_found"
        assert "unknown chat model 'nope'" in response.error.message
        await engines.close()


async def test_wrong_kind_of_model_is_an_invalid_request(bus: MemoryBus) -> None:
    response = await call_service(bus, chat_request("vecs", "hi"))
    assert response.error is not None and response.error.code == "invalid_request"
    assert "embedding model" in response.error.message
    embed = RequestMessage(
        service="embed", op="embed", body=to_body(EmbedRequest(model="chatty", inputs=["x"]))
    )
    response = await call_service(bus, embed)
    assert response.error is not None and response.error.code == "invalid_request"
    assert "'chatty' is a chat model" in response.error.message


async def test_missing_api_key_secret_is_an_auth_error(
    bus: MemoryBus, server: FakeLLMServer
) -> None:
    response = await call_service(bus, chat_request("keyless", "hi"))
    assert response.error is not None
    assert response.error.code == "auth" and not response.error.retryable
    assert "missing-secret" in response.error.message
    assert server.count() == 0


async def test_upstream_errors_cross_the_bus_with_their_codes(
    bus: MemoryBus, server: FakeLLMServer
) -> None:
    for status, code, retryable in [
        (429, "rate_limited", True),
        (502, "upstream_error", True),
        (401, "auth", False),
    ]:
        server.fail_next(status)
        response = await call_service(bus, chat_request("chatty", "hi"))
        assert response.error is not None
        assert (response.error.code, response.error.retryable) == (code, retryable)
        with pytest.raises(RoostError) as info:
            raise_for_error(response)
        assert info.value.retryable is retryable


async def collect_events(bus: MemoryBus, session: str) -> tuple[list[EventMessage], Subscription]:
    events: list[EventMessage] = []

    async def on_event(delivery: Delivery) -> None:
        events.append(decode(delivery.data, EventMessage))

    sub = await bus.subscribe(subjects.events(session), on_event)
    return events, sub


async def wait_for_text(events: list[EventMessage], text: str) -> None:
    for _ in range(200):
        if "".join(e.data["text"] for e in events) == text:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"token events {[e.data for e in events]} never spelled {text!r}")


async def test_stream_publishes_token_events(bus: MemoryBus, server: FakeLLMServer) -> None:
    events, sub = await collect_events(bus, "sess-1")
    server.reply("one two three four")
    request = chat_request("chatty", "count", stream=True)
    result = await chat(bus, request)
    assert result.message.content == "one two three four"
    await wait_for_text(events, "one two three four")
    assert len(events) == 4
    for event in events:
        assert event.type == "token"
        assert (event.session, event.branch, event.agent) == ("sess-1", "main", "writer")
        assert event.correlation_id == request.id
    assert server.last().body["stream"] is True
    await sub.unsubscribe()


async def test_no_token_events_without_stream(bus: MemoryBus, server: FakeLLMServer) -> None:
    events, sub = await collect_events(bus, "sess-1")
    await chat(bus, chat_request("llama", "quiet please"))
    await asyncio.sleep(0.05)
    assert events == []
    assert server.last().body["stream"] is False
    await sub.unsubscribe()


async def test_engine_call_is_bounded_by_the_request_timeout(
    registry: Registry, server: FakeLLMServer
) -> None:
    engines = EngineSet(timeout_s=30)
    async with MemoryBus() as bus:
        service = InferenceService(bus, engines, registry.get, registry.secret)
        server.delay_next(2.0)
        request = RequestMessage(
            service="infer", op="chat", body=chat_request("chatty", "hi").body, timeout_s=0.3
        )
        response = await service.handle(request)
    await engines.close()
    assert response.error is not None
    assert response.error.code == "timeout" and response.error.retryable
    assert "0.3s" in response.error.message


def embed_request(model: str, inputs: list[str]) -> RequestMessage:
    return RequestMessage(
        service="embed",
        op="embed",
        body=to_body(EmbedRequest(model=model, inputs=inputs)),
        timeout_s=10,
    )


@pytest.mark.parametrize("model", ["vecs", "vecs-oa"])
async def test_embed_through_the_service(bus: MemoryBus, server: FakeLLMServer, model: str) -> None:
    response = await call_service(bus, embed_request(model, ["red apple", "green pear"]))
    result = from_body(raise_for_error(response), EmbedResult)
    assert result.model == model
    assert result.dimension == 8
    assert result.vectors[1] == pytest.approx(fake_embedding("green pear", 8), abs=1e-6)
    assert result.usage.prompt_tokens == 4


async def test_embed_default_model_and_dimension_check(bus: MemoryBus) -> None:
    result = from_body(
        raise_for_error(await call_service(bus, embed_request("", ["x"]))), EmbedResult
    )
    assert result.model == "vecs"
    response = await call_service(bus, embed_request("wrong-dim", ["x"]))
    assert response.error is not None and response.error.code == "invalid_request"
    assert "dimension 99" in response.error.message and "8-dimensional" in response.error.message


async def test_models_op_lists_models_by_kind(bus: MemoryBus) -> None:
    response = await call_service(bus, RequestMessage(service="infer", op="models"))
    assert [m["name"] for m in raise_for_error(response)["models"]] == [
        "chatty",
        "llama",
        "keyless",
    ]
    response = await call_service(bus, RequestMessage(service="embed", op="models"))
    body = raise_for_error(response)
    assert {m["name"]: m["dimension"] for m in body["models"]} == {
        "vecs": 8,
        "vecs-oa": 0,
        "wrong-dim": 99,
    }
    ping = raise_for_error(await call_service(bus, RequestMessage(service="infer", op="ping")))
    assert ping["ops"] == ["chat", "models", "ping"]


# --- the embedded defaults through the services ---------------------------------------------


@pytest.fixture(scope="module")
def local_engines() -> Iterator[EngineSet]:
    engines = EngineSet(n_ctx=2048, seed=3)
    yield engines
    asyncio.run(engines.close())


@pytest.fixture
async def local_bus(local_engines: EngineSet) -> AsyncIterator[MemoryBus]:
    defaults = {m.name: m for m in default_models()}
    if set(defaults) != {"smollm2", "minilm"}:
        pytest.skip("the embedded default models are not installed")
    registry = Registry(list(defaults.values()), {})
    async with MemoryBus() as bus:
        infer = InferenceService(bus, local_engines, registry.get, registry.secret)
        embed = EmbeddingService(bus, local_engines, registry.get, registry.secret)
        await infer.start()
        await embed.start()
        yield bus  # type: ignore[misc]
        await infer.stop()
        await embed.stop()


@pytest.mark.model
async def test_smollm2_streams_through_the_service(local_bus: MemoryBus) -> None:
    events, sub = await collect_events(local_bus, "sess-1")
    body = ChatRequest(
        model="",  # the default: smollm2
        messages=[ChatMessage(role="user", content="Write one short sentence about the sea.")],
        max_tokens=16,
        temperature=0.0,
        stream=True,
    )
    request = RequestMessage(
        service="infer", op="chat", body=to_body(body), session="sess-1", timeout_s=60
    )
    response: ResponseMessage = await call_service(local_bus, request)
    result = from_body(raise_for_error(response), ChatResult)
    assert result.model == "smollm2"
    assert result.message.content.strip()
    assert result.usage.prompt_tokens > 0 and 0 < result.usage.completion_tokens <= 16
    await wait_for_text(events, result.message.content)
    assert all(e.correlation_id == request.id for e in events)
    await sub.unsubscribe()


@pytest.mark.model
async def test_minilm_through_the_service(local_bus: MemoryBus) -> None:
    response = await call_service(local_bus, embed_request("", ["hello world", "good morning"]))
    result = from_body(raise_for_error(response), EmbedResult)
    assert result.model == "minilm" and result.dimension == 384
    assert len(result.vectors) == 2 and result.usage.prompt_tokens > 0
