"""Model calls reach the workers that run the model's engine: workers serve one shard per
engine, the caller routes by the model's engine, and per-engine worker counts configure it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fakes import FakeLLMServer
from roost.bus import MemoryBus
from roost.config import ConfigError, load_settings
from roost.engines import EngineSet
from roost.protocol import (
    ChatMessage,
    ChatRequest,
    RequestMessage,
    ServiceUnavailableError,
    to_body,
)
from roost.runtime import EngineRouter, NullRecorder
from roost.runtime._dispatch import dispatch_request
from roost.services import call_service, raise_for_error
from roost.services.inference import InferenceService
from roost.stores import ModelRecord


@pytest.fixture
def llm() -> AsyncIterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def models(llm: FakeLLMServer) -> dict[str, ModelRecord]:
    return {
        "local-llama": ModelRecord("local-llama", "chat", "ollama", "fake-chat", llm.ollama_url),
        "cloud": ModelRecord("cloud", "chat", "openai", "fake-chat", llm.openai_url),
    }


def chat(model: str) -> RequestMessage:
    body = ChatRequest(model=model, messages=[ChatMessage(role="user", content="hi")])
    return RequestMessage(service="infer", op="chat", body=to_body(body), timeout_s=10)


async def test_requests_reach_the_workers_of_their_engine(llm: FakeLLMServer) -> None:
    known = models(llm)

    async def resolve(name: str) -> ModelRecord:
        return known[name]

    async def no_secret(name: str) -> str | None:
        return None

    engines = EngineSet()
    async with MemoryBus() as bus:
        ollama = InferenceService(bus, engines, resolve, no_secret, served_engines=["ollama"])
        openai = InferenceService(bus, engines, resolve, no_secret, served_engines=["openai"])
        assert ollama.subjects == ["roost.v1.svc.infer", "roost.v1.svc.infer.ollama"]
        for worker in (ollama, openai):
            await worker.start()
        router = EngineRouter(resolve)
        for _ in range(4):
            for name in ("local-llama", "cloud"):
                body = await dispatch_request(bus, NullRecorder(), chat(name), router)
                assert body["message"]["content"] == "echo: hi"
        assert (ollama.served, openai.served) == (4, 4)  # each only its engine's model
        assert llm.count("/api/chat") == 4 and llm.count("/v1/chat/completions") == 4
        # unrouted (the plain subject), a worker of the wrong engine refuses, retryably
        refusals = 0
        for _ in range(6):
            try:
                raise_for_error(await call_service(bus, chat("cloud")))
            except ServiceUnavailableError as exc:
                assert "serves engine(s) ollama, not openai" in str(exc) and exc.retryable
                refusals += 1
        assert 0 < refusals < 6
        for worker in (ollama, openai):
            await worker.stop()
    await engines.close()


async def test_the_router_names_the_engine_and_leaves_other_calls_alone(
    llm: FakeLLMServer,
) -> None:
    calls: list[str] = []
    known = models(llm)

    async def resolve(name: str) -> ModelRecord:
        calls.append(name)
        if name not in known:
            from roost.protocol import NotFoundError

            raise NotFoundError(f"unknown model {name!r}")
        return known[name]

    router = EngineRouter(resolve)
    assert await router.shard(chat("cloud")) == "openai"
    assert await router.shard(chat("local-llama")) == "ollama"
    assert calls == ["cloud", "local-llama"]
    assert await router.shard(chat("nope")) is None  # the service reports the unknown model
    kv = RequestMessage(service="kv", op="get", body={"key": "k"}, timeout_s=1)
    assert await router.shard(kv) is None


def test_per_engine_worker_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from roost.daemon._env import ENGINE_ENV
    from roost.daemon._plan import plan_node

    monkeypatch.setenv("ROOST_HOME", str(tmp_path))
    monkeypatch.delenv("ROOST_CONFIG", raising=False)
    (tmp_path / "config.toml").write_text(
        '[bus]\nbackend = "nats"\n[distributed.workers]\n'
        "registry = 0\nstate = 0\nsecret = 0\ncatalog = 0\nharness = 0\nagent = 0\n"
        "kv = 0\nvec = 0\nembedding = 1\n"
        "[distributed.workers.inference]\nollama = 2\nopenai = 1\n"
    )
    settings = load_settings()
    assert settings.distributed.count("inference") == 3
    plan = plan_node(settings)
    inference = [spec for phase in plan.phases for spec in phase if spec.role == "inference"]
    assert [(s.index, s.env[ENGINE_ENV]) for s in inference] == [
        (0, "ollama"),
        (1, "ollama"),
        (2, "openai"),
    ]
    [embedding] = [spec for phase in plan.phases for spec in phase if spec.role == "embedding"]
    assert ENGINE_ENV not in embedding.env  # a plain count: every installed engine


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("[distributed.workers.inference]\nvllm = 1\n", "unknown engine(s) 'vllm'"),
        ("[distributed.workers.kv]\nollama = 1\n", "counts per engine are for inference and"),
        ("[distributed.workers.inference]\nopenai = -2\n", "inference.openai = -2"),
    ],
)
def test_bad_per_engine_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, problem: str
) -> None:
    monkeypatch.setenv("ROOST_HOME", str(tmp_path))
    monkeypatch.delenv("ROOST_CONFIG", raising=False)
    (tmp_path / "config.toml").write_text(table)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_settings()


def test_engine_names_agree() -> None:
    from roost.config._settings import ENGINE_NAMES as CONFIGURED
    from roost.engines import ENGINE_NAMES

    assert tuple(CONFIGURED) == tuple(ENGINE_NAMES)
