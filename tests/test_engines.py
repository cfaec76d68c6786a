"""Engines: Ollama and OpenAI clients against a real HTTP server speaking their wire formats,
the embedded llama.cpp and sentence-transformers engines on the real models from wheels."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import pytest

from fakes import FakeLLMServer, ToolCallReply, fake_embedding
from roost.engines import (
    EngineSet,
    IsolatedEngine,
    LlamaCppEngine,
    OllamaEngine,
    OpenAIEngine,
    SentenceTransformerEngine,
    default_models,
    minilm_path,
    smollm2_path,
)
from roost.engines._tools import ToolStreamFilter, parse_reply, to_prompt_messages
from roost.protocol import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    InvalidRequestError,
    NotFoundError,
    RoostError,
    ServiceUnavailableError,
    ToolCall,
    ToolSpec,
    UpstreamError,
)
from roost.stores._records import ModelRecord

FLAVORS = ("ollama", "openai")
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather of a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


def user(text: str) -> ChatRequest:
    return ChatRequest(model="m", messages=[ChatMessage(role="user", content=text)])


# --- the fake server and engines on it ----------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(models=["fake-chat", "fake-embed", "other"], dimension=12) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        request.getfixturevalue("server").reset()


def make_engine(flavor: str, base_url: str, **kw: Any) -> OllamaEngine | OpenAIEngine:
    if flavor == "ollama":
        return OllamaEngine(base_url, **kw)
    return OpenAIEngine(base_url, **kw)


def url_of(server: FakeLLMServer, flavor: str) -> str:
    return server.ollama_url if flavor == "ollama" else server.openai_url


def chat_path(flavor: str) -> str:
    return "/api/chat" if flavor == "ollama" else "/v1/chat/completions"


def embed_path(flavor: str) -> str:
    return "/api/embed" if flavor == "ollama" else "/v1/embeddings"


def record(flavor: str, server: FakeLLMServer, target: str = "fake-chat", **kw: Any) -> ModelRecord:
    kind: Literal["chat", "embedding"] = "embedding" if "embed" in target else "chat"
    return ModelRecord(
        name=f"my-{target}",
        kind=kind,
        engine=flavor,  # type: ignore[arg-type]
        target=target,
        base_url=url_of(server, flavor),
        **kw,
    )


@pytest.fixture(params=FLAVORS)
async def remote(
    request: pytest.FixtureRequest, server: FakeLLMServer
) -> AsyncIterator[tuple[str, OllamaEngine | OpenAIEngine]]:
    flavor: str = request.param
    engine = make_engine(flavor, url_of(server, flavor), timeout_s=5)
    yield flavor, engine
    await engine.close()


async def test_text_reply_with_usage(remote: tuple[str, Any], server: FakeLLMServer) -> None:
    flavor, engine = remote
    server.reply("Paris is the capital.", prompt_tokens=11, completion_tokens=5)
    model = record(flavor, server)
    result = await engine.chat(model, user("What is the capital of France?"))
    assert isinstance(result, ChatResult)
    assert result.message == ChatMessage(role="assistant", content="Paris is the capital.")
    assert result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 5)
    assert result.model == "my-fake-chat"
    sent = server.last(chat_path(flavor))
    assert sent.model == "fake-chat"
    assert sent.body["messages"][-1] == {
        "role": "user",
        "content": "What is the capital of France?",
    }
    assert sent.body.get("stream") in (False, None)
    assert server.count() == 1


async def test_default_usage_is_counted_by_the_server(
    remote: tuple[str, Any], server: FakeLLMServer
) -> None:
    flavor, engine = remote
    result = await engine.chat(record(flavor, server), user("one two three"))
    assert result.message.content == "echo: one two three"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (3, 4)


async def test_tool_call_reply(remote: tuple[str, Any], server: FakeLLMServer) -> None:
    flavor, engine = remote
    server.reply_tool_call("get_weather", {"city": "Paris", "units": {"temp": "C"}})
    request = ChatRequest(
        model="m", messages=[ChatMessage(role="user", content="Weather in Paris?")], tools=[WEATHER]
    )
    result = await engine.chat(record(flavor, server), request)
    assert result.finish_reason == "tool_calls"
    [call] = result.message.tool_calls
    assert call.name == "get_weather"
    assert call.arguments == {"city": "Paris", "units": {"temp": "C"}}
    assert call.id
    sent = server.last(chat_path(flavor)).body
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather of a city",
                "parameters": WEATHER.parameters,
            },
        }
    ]


async def test_history_with_tool_results_uses_the_wire_format(
    remote: tuple[str, Any], server: FakeLLMServer
) -> None:
    flavor, engine = remote
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Oslo"})
    request = ChatRequest(
        model="m",
        messages=[
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(role="user", content="Weather in Oslo?"),
            ChatMessage(role="assistant", tool_calls=[call]),
            ChatMessage(
                role="tool", content="-3C, snow", tool_call_id="call_1", name="get_weather"
            ),
        ],
        tools=[WEATHER],
    )
    server.reply("It is -3C and snowing.")
    result = await engine.chat(record(flavor, server), request)
    assert result.message.content == "It is -3C and snowing."
    messages = server.last(chat_path(flavor)).body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    if flavor == "ollama":
        assert messages[2]["tool_calls"] == [
            {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
        ]
        assert messages[3] == {"role": "tool", "content": "-3C, snow", "tool_name": "get_weather"}
    else:
        assert messages[2]["tool_calls"][0]["id"] == "call_1"
        assert json.loads(messages[2]["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
        assert messages[3]["tool_call_id"] == "call_1"
        assert messages[3]["content"] == "-3C, snow"


async def test_streaming_tokens(remote: tuple[str, Any], server: FakeLLMServer) -> None:
    flavor, engine = remote
    server.reply("The quick brown fox jumps", prompt_tokens=7, completion_tokens=5)
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    result = await engine.chat(record(flavor, server), user("go"), on_token=on_token)
    assert len(tokens) == 5
    assert "".join(tokens) == result.message.content == "The quick brown fox jumps"
    assert result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 5)
    sent = server.last(chat_path(flavor)).body
    assert sent["stream"] is True
    if flavor == "openai":
        assert sent["stream_options"] == {"include_usage": True}


async def test_streaming_tool_calls(remote: tuple[str, Any], server: FakeLLMServer) -> None:
    flavor, engine = remote
    server.reply(
        "Let me check.",
        tool_calls=[
            ToolCallReply("get_weather", {"city": "Lima"}),
            ToolCallReply("get_weather", {"city": "Quito"}),
        ],
    )
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    request = ChatRequest(
        model="m", messages=[ChatMessage(role="user", content="weather?")], tools=[WEATHER]
    )
    result = await engine.chat(record(flavor, server), request, on_token=on_token)
    assert "".join(tokens) == "Let me check."
    assert result.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in result.message.tool_calls] == [
        ("get_weather", {"city": "Lima"}),
        ("get_weather", {"city": "Quito"}),
    ]
    assert len({c.id for c in result.message.tool_calls}) == 2


async def test_max_tokens_maps_to_length(remote: tuple[str, Any], server: FakeLLMServer) -> None:
    flavor, engine = remote
    server.reply("one two three four five six")
    request = ChatRequest(
        model="m",
        messages=[ChatMessage(role="user", content="count")],
        max_tokens=3,
        temperature=0.0,
    )
    result = await engine.chat(record(flavor, server), request)
    assert result.message.content == "one two three"
    assert result.finish_reason == "length"
    sent = server.last(chat_path(flavor)).body
    if flavor == "ollama":
        assert sent["options"] == {"temperature": 0.0, "num_predict": 3}
    else:
        assert (sent["max_tokens"], sent["temperature"]) == (3, 0.0)


async def test_embeddings(remote: tuple[str, Any], server: FakeLLMServer) -> None:
    flavor, engine = remote
    model = record(flavor, server, "fake-embed")
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    result = await engine.embed(model, texts)
    assert result.dimension == 12
    assert result.model == "my-fake-embed"
    assert len(result.vectors) == 3
    for vector, text in zip(result.vectors, texts, strict=True):
        # OpenAI's client asks for base64 float32: equal up to float32 precision
        assert vector == pytest.approx(fake_embedding(text, 12), abs=1e-6)
    assert result.usage.prompt_tokens == 6
    assert (await engine.embed(model, [])).vectors == []
    assert server.count(embed_path(flavor)) == 1


async def test_embedding_dimensions_option(remote: tuple[str, Any], server: FakeLLMServer) -> None:
    flavor, engine = remote
    model = record(flavor, server, "fake-embed", options={"dimensions": 5})
    result = await engine.embed(model, ["x"])
    assert result.dimension == 5
    assert server.last(embed_path(flavor)).body["dimensions"] == 5


async def test_openai_embeddings_are_batched(server: FakeLLMServer) -> None:
    engine = OpenAIEngine(server.openai_url)
    try:
        model = record("openai", server, "fake-embed", options={"batch_size": 2})
        texts = [f"text {i}" for i in range(5)]
        result = await engine.embed(model, texts)
        assert [len(r.body["input"]) for r in server.requests] == [2, 2, 1]
        assert result.vectors[4] == pytest.approx(fake_embedding("text 4", 12), abs=1e-6)
        assert result.usage.prompt_tokens == 10
    finally:
        await engine.close()


async def test_list_models(remote: tuple[str, Any], server: FakeLLMServer) -> None:
    _, engine = remote
    assert await engine.list_models() == ["fake-chat", "fake-embed", "other"]


STATUS_CASES = [
    (429, ServiceUnavailableError, "rate_limited", True),
    (500, UpstreamError, "upstream_error", True),
    (503, UpstreamError, "upstream_error", True),
    (401, RoostError, "auth", False),
    (403, RoostError, "auth", False),
    (404, NotFoundError, "not_found", False),
    (400, InvalidRequestError, "invalid_request", False),
    (422, InvalidRequestError, "invalid_request", False),
]


@pytest.mark.parametrize(("status", "cls", "code", "retryable"), STATUS_CASES)
async def test_http_errors_map_to_roost_errors(
    remote: tuple[str, Any],
    server: FakeLLMServer,
    status: int,
    cls: type[RoostError],
    code: str,
    retryable: bool,
) -> None:
    flavor, engine = remote
    server.fail_next(status, message="something specific went wrong")
    model = record(flavor, server)
    with pytest.raises(cls) as info:
        await engine.chat(model, user("hi"))
    err = info.value
    assert (err.code, err.retryable) == (code, retryable)
    assert flavor in err.message
    assert server.url in err.message
    assert "'fake-chat'" in err.message
    assert "something specific went wrong" in err.message
    assert server.count() == 1  # no hidden client retries


@pytest.mark.parametrize("status", [429, 500, 401, 404])
async def test_errors_while_streaming_and_embedding(
    remote: tuple[str, Any], server: FakeLLMServer, status: int
) -> None:
    flavor, engine = remote
    expected = {429: "rate_limited", 500: "upstream_error", 401: "auth", 404: "not_found"}[status]

    async def on_token(text: str) -> None:
        raise AssertionError("no tokens expected")

    server.fail_next(status)
    with pytest.raises(RoostError) as info:
        await engine.chat(record(flavor, server), user("hi"), on_token=on_token)
    assert info.value.code == expected
    server.fail_next(status)
    with pytest.raises(RoostError) as info:
        await engine.embed(record(flavor, server, "fake-embed"), ["x"])
    assert info.value.code == expected
    server.fail_next(status)
    with pytest.raises(RoostError) as info:
        await engine.list_models()
    assert info.value.code == expected


async def test_rate_limit_carries_retry_after(server: FakeLLMServer) -> None:
    engine = OpenAIEngine(server.openai_url)
    try:
        server.fail_next(429, retry_after="7")
        with pytest.raises(ServiceUnavailableError) as info:
            await engine.chat(record("openai", server), user("hi"))
        assert info.value.details["retry_after"] == "7"
        assert "retry after 7s" in info.value.message
    finally:
        await engine.close()


async def test_unknown_model_is_not_found(remote: tuple[str, Any], server: FakeLLMServer) -> None:
    flavor, engine = remote
    with pytest.raises(NotFoundError) as info:
        await engine.chat(record(flavor, server, "no-such-model"), user("hi"))
    assert "no-such-model" in info.value.message
    assert not info.value.retryable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_unreachable_server_is_unavailable_quickly(flavor: str) -> None:
    base = f"http://127.0.0.1:{free_port()}" + ("/v1" if flavor == "openai" else "")
    engine = make_engine(flavor, base)
    model = ModelRecord(name="x", kind="chat", engine=flavor, target="x", base_url=base)  # type: ignore[arg-type]
    try:
        started = time.perf_counter()
        with pytest.raises(ServiceUnavailableError) as info:
            await engine.chat(model, user("hi"))
        assert time.perf_counter() - started < 2
        assert info.value.code == "unavailable" and info.value.retryable
        assert base in info.value.message and "unreachable" in info.value.message
        with pytest.raises(ServiceUnavailableError):
            await engine.embed(model, ["x"])
        with pytest.raises(ServiceUnavailableError):
            await engine.list_models()
    finally:
        await engine.close()


async def test_slow_server_times_out_as_unavailable(
    remote: tuple[str, Any], server: FakeLLMServer
) -> None:
    flavor, _ = remote
    engine = make_engine(flavor, url_of(server, flavor), timeout_s=0.3)
    try:
        server.delay_next(1.5)
        started = time.perf_counter()
        with pytest.raises(ServiceUnavailableError) as info:
            await engine.chat(record(flavor, server), user("hi"))
        assert time.perf_counter() - started < 1.4
        assert "timed out" in info.value.message and info.value.retryable
    finally:
        await engine.close()


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_api_key_is_sent(flavor: str) -> None:
    with FakeLLMServer(api_key="sk-secret") as srv:
        base = url_of(srv, flavor)
        model = ModelRecord(
            name="m",
            kind="chat",
            engine=flavor,  # type: ignore[arg-type]
            target="fake-chat",
            base_url=base,
        )
        good = make_engine(flavor, base, api_key="sk-secret")
        bad = make_engine(flavor, base, api_key="sk-wrong")
        try:
            assert (await good.chat(model, user("hi"))).message.content == "echo: hi"
            assert srv.last().headers["authorization"] == "Bearer sk-secret"
            with pytest.raises(RoostError) as info:
                await bad.chat(model, user("hi"))
            assert info.value.code == "auth" and not info.value.retryable
        finally:
            await good.close()
            await bad.close()


# --- the engine set -----------------------------------------------------------------------


async def test_engine_set_creates_engines_lazily_and_shares_them(server: FakeLLMServer) -> None:
    engines = EngineSet(timeout_s=5)
    try:
        ollama = record("ollama", server)
        assert engines.chat_engine(ollama) is engines.chat_engine(ollama)
        shared: object = engines.chat_engine(ollama)
        assert shared is engines.embedding_engine(ollama)
        assert engines.chat_engine(ollama) is not engines.chat_engine(ollama, api_key="k")
        assert isinstance(engines.chat_engine(record("openai", server)), OpenAIEngine)
        assert await engines.list_models("openai", server.openai_url) == [
            "fake-chat",
            "fake-embed",
            "other",
        ]
        llama = ModelRecord(name="s", kind="chat", engine="llama-cpp", target="/nope.gguf")
        # the embedded engines run in a child process each (tests/test_engine_isolation.py)
        assert isinstance(engines.chat_engine(llama), IsolatedEngine)
        assert engines.chat_engine(llama).name == "llama-cpp"
        st = ModelRecord(name="e", kind="embedding", engine="sentence-transformers", target="/x")
        assert isinstance(engines.embedding_engine(st), IsolatedEngine)
        assert engines.embedding_engine(st).name == "sentence-transformers"
        with pytest.raises(InvalidRequestError, match="cannot chat"):
            engines.chat_engine(st)
        with pytest.raises(InvalidRequestError, match="cannot embed"):
            engines.embedding_engine(llama)
        with pytest.raises(InvalidRequestError, match="unknown engine"):
            engines.get("vllm")
        with pytest.raises(NotFoundError, match="no GGUF file"):
            await engines.chat_engine(llama).chat(llama, user("hi"))
        with pytest.raises(NotFoundError, match="no model directory"):
            await engines.embedding_engine(st).embed(st, ["x"])
    finally:
        await engines.close()


def test_importing_engines_loads_no_engine_library() -> None:
    code = (
        "import sys\n"
        "from roost.engines import EngineSet, default_models\n"
        "engines = EngineSet()\n"
        "assert default_models()\n"
        "heavy = {'torch', 'llama_cpp', 'sentence_transformers', 'openai', 'ollama', 'llm'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_default_models_are_the_installed_wheels() -> None:
    models = {m.name: m for m in default_models()}
    assert set(models) == {"smollm2", "minilm"}
    assert models["smollm2"].engine == "llama-cpp" and models["smollm2"].kind == "chat"
    assert models["smollm2"].target == str(smollm2_path())
    assert models["smollm2"].target.endswith(".gguf")
    assert models["minilm"].engine == "sentence-transformers"
    assert models["minilm"].kind == "embedding" and models["minilm"].dimension == 384
    assert models["minilm"].target == str(minilm_path())


# --- the prompt tool protocol of the embedded engine ----------------------------------------


def test_parse_reply_finds_tool_calls() -> None:
    tools = [WEATHER]
    text, calls = parse_reply(
        'Sure.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>',
        tools,
    )
    assert text == "Sure."
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Rome"})]
    _, calls = parse_reply(
        '<tool_call>[{"name": "get_weather", "arguments": {"city": "A"}}, '
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"B\\"}"}]</tool_call>',
        tools,
    )
    assert [c.arguments for c in calls] == [{"city": "A"}, {"city": "B"}]
    _, calls = parse_reply(
        '```json\n{"name": "get_weather", "parameters": {"city": "C"}}\n```', tools
    )
    assert [c.arguments for c in calls] == [{"city": "C"}]
    _, calls = parse_reply('{"function": {"name": "get_weather", "arguments": {}}} trailing', tools)
    assert [c.name for c in calls] == ["get_weather"]


def test_parse_reply_leaves_text_alone() -> None:
    for text in [
        "The weather is nice.",
        '{"name": "launch_rockets", "arguments": {}}',  # not an offered tool
        "<tool_call>{not json</tool_call>",
        '{"city": "Paris"}',
    ]:
        assert parse_reply(text, [WEATHER]) == (text, [])
    assert parse_reply('{"name": "get_weather"}', []) == ('{"name": "get_weather"}', [])


def test_tool_stream_filter_holds_back_calls() -> None:
    f = ToolStreamFilter()
    out = [f.feed(p) for p in ["Hello", " wor", "ld <tool", "_call>{", '"name"', "}</tool_call>"]]
    assert "".join(out) == "Hello world "
    assert f.finish(had_calls=True) == ""
    f = ToolStreamFilter()
    out = [f.feed(p) for p in ["<to", "day> is", " fine"]]
    assert "".join(out) + f.finish(had_calls=False) == "<today> is fine"
    f = ToolStreamFilter()
    assert [f.feed(p) for p in ['{"na', 'me": 1}']] == ["", ""]
    assert f.finish(had_calls=False) == '{"name": 1}'


def test_prompt_messages_carry_tools_and_results() -> None:
    call = ToolCall(id="c1", name="get_weather", arguments={"city": "Oslo"})
    out = to_prompt_messages(
        [
            ChatMessage(role="user", content="Weather?"),
            ChatMessage(role="assistant", content="", tool_calls=[call]),
            ChatMessage(role="tool", content="cold", tool_call_id="c1", name="get_weather"),
            ChatMessage(role="tool", content="windy", tool_call_id="c2", name="get_weather"),
        ],
        [WEATHER],
    )
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert '"name": "get_weather"' in out[0]["content"] and "<tools>" in out[0]["content"]
    assert out[2]["content"] == (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    )
    assert out[3]["content"].count("<tool_response>") == 2
    assert "cold" in out[3]["content"] and "windy" in out[3]["content"]


# --- the embedded engines on the real models ------------------------------------------------


@pytest.fixture(scope="module")
def llama_engine() -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine(n_ctx=2048, seed=7)
    yield engine
    asyncio.run(engine.close())


@pytest.mark.model
async def test_smollm2_answers(llama_engine: LlamaCppEngine, smollm2: ModelRecord) -> None:
    request = ChatRequest(
        model="smollm2",
        messages=[ChatMessage(role="user", content="What is the capital of France?")],
        max_tokens=16,
        temperature=0.0,
    )
    result = await llama_engine.chat(smollm2, request)
    assert result.message.role == "assistant"
    assert result.message.content.strip()
    assert result.usage.prompt_tokens > 5
    assert 0 < result.usage.completion_tokens <= 16
    assert result.finish_reason in ("stop", "length")
    assert result.model == "smollm2"
    assert llama_engine.loaded == [smollm2.target]


@pytest.mark.model
async def test_smollm2_streams_tokens(llama_engine: LlamaCppEngine, smollm2: ModelRecord) -> None:
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    request = ChatRequest(
        model="smollm2",
        messages=[
            ChatMessage(role="system", content="You are a concise assistant."),
            ChatMessage(role="user", content="Name three colors."),
        ],
        max_tokens=16,
        temperature=0.0,
    )
    result = await llama_engine.chat(smollm2, request, on_token=on_token)
    assert len(tokens) > 1
    assert "".join(tokens) == result.message.content
    # streaming changes nothing but the delivery: same text, same exact usage
    plain = await llama_engine.chat(smollm2, request)
    assert plain.message.content == result.message.content
    assert plain.usage == result.usage
    assert result.usage.completion_tokens >= len(tokens)


@pytest.mark.model
async def test_smollm2_with_tools_gives_a_valid_result(
    llama_engine: LlamaCppEngine, smollm2: ModelRecord
) -> None:
    request = ChatRequest(
        model="smollm2",
        messages=[ChatMessage(role="user", content="What is the weather in Paris?")],
        tools=[WEATHER],
        max_tokens=32,
        temperature=0.0,
    )
    result = await llama_engine.chat(smollm2, request)
    # a 135M model may or may not call the tool; either way the result is well-formed
    if result.message.tool_calls:
        assert result.finish_reason == "tool_calls"
        assert all(c.name == "get_weather" and c.id for c in result.message.tool_calls)
    else:
        assert result.message.content.strip()
        assert result.finish_reason in ("stop", "length")
    assert result.usage.prompt_tokens > 50  # the tool section is in the prompt


@pytest.mark.model
async def test_smollm2_serves_concurrent_chats(
    llama_engine: LlamaCppEngine, smollm2: ModelRecord
) -> None:
    requests = [
        ChatRequest(
            model="smollm2",
            messages=[ChatMessage(role="user", content=f"Say a word about {topic}.")],
            max_tokens=8,
        )
        for topic in ("cats", "rain", "bread")
    ]
    results = await asyncio.gather(*(llama_engine.chat(smollm2, r) for r in requests))
    assert all(r.usage.completion_tokens > 0 for r in results)


@pytest.mark.model
async def test_smollm2_cancelled_call_stops_generating(
    llama_engine: LlamaCppEngine, smollm2: ModelRecord
) -> None:
    long = ChatRequest(
        model="smollm2",
        messages=[ChatMessage(role="user", content="Write a very long story about a dragon.")],
        max_tokens=1500,
        temperature=0.8,
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(llama_engine.chat(smollm2, long), 0.3)
    # the model's thread is free again at once, not after 1500 tokens
    started = time.perf_counter()
    result = await llama_engine.chat(smollm2, user("Hi"))
    assert time.perf_counter() - started < 3
    assert result.usage.completion_tokens > 0


@pytest.mark.model
async def test_smollm2_prompt_over_context_is_rejected(smollm2: ModelRecord) -> None:
    engine = LlamaCppEngine(n_ctx=64)
    try:
        request = ChatRequest(
            model="smollm2", messages=[ChatMessage(role="user", content="word " * 200)]
        )
        with pytest.raises(InvalidRequestError, match="context window"):
            await engine.chat(smollm2, request)
    finally:
        await engine.close()


@pytest.fixture(scope="module")
def st_engine() -> Iterator[SentenceTransformerEngine]:
    engine = SentenceTransformerEngine()
    yield engine
    asyncio.run(engine.close())


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.model
async def test_minilm_embeds(st_engine: SentenceTransformerEngine, minilm: ModelRecord) -> None:
    texts = [
        "A cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "The central bank raised interest rates.",
    ]
    result = await st_engine.embed(minilm, texts)
    assert result.dimension == 384 and result.model == "minilm"
    assert [len(v) for v in result.vectors] == [384, 384, 384]
    for vector in result.vectors:
        assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-4)
    cat, kitten, bank = result.vectors
    assert cosine(cat, kitten) > cosine(cat, bank) + 0.2
    assert result.usage.prompt_tokens > len(texts)
    again = await st_engine.embed(minilm, texts[:1])
    assert again.vectors[0] == pytest.approx(cat, abs=1e-5)
    assert (await st_engine.embed(minilm, [])).dimension == 384
