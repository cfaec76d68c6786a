"""``[inference] concurrency``: how many chat requests one inference worker serves at once,
against the fake LLM server with a fixed latency per request (``delay_s``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from fakes import FakeLLMServer
from roost.config import Settings
from roost.platform import Platform
from roost.protocol import ChatMessage, ChatRequest, RequestMessage, to_body
from roost.services import call_service

DELAY_S = 0.2
CALLS = 3


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(models=["fake-chat"], delay_s=DELAY_S) as srv:
        yield srv


async def _three_at_once(home: Path, server: FakeLLMServer, concurrency: int) -> float:
    """Seconds for CALLS concurrent chat requests to a platform whose worker serves
    ``concurrency`` at a time."""
    settings = Settings(
        home=home, workflows={"engine": "inprocess"}, inference={"concurrency": concurrency}
    )
    async with await Platform.open(settings) as platform:
        await platform.add_model(
            name="slow", engine="openai", target="fake-chat", base_url=server.openai_url
        )

        async def chat(i: int) -> None:
            body = to_body(
                ChatRequest(model="slow", messages=[ChatMessage(role="user", content=f"q{i}")])
            )
            request = RequestMessage(service="infer", op="chat", body=body, timeout_s=10.0)
            response = await call_service(platform.bus, request)
            assert response.ok, response.error

        await chat(-1)  # the engine client and its connection exist before the clock starts
        started = time.perf_counter()
        await asyncio.gather(*(chat(i) for i in range(CALLS)))
        return time.perf_counter() - started


async def test_concurrency_one_serves_requests_one_after_another(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    elapsed = await _three_at_once(tmp_path / "home", server, concurrency=1)
    assert elapsed >= CALLS * DELAY_S * 0.95


async def test_default_concurrency_serves_requests_together(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    assert Settings(home=tmp_path).inference.concurrency == 64
    elapsed = await _three_at_once(tmp_path / "home", server, concurrency=64)
    assert DELAY_S * 0.95 <= elapsed < 2 * DELAY_S


def test_concurrency_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="concurrency"):
        Settings(home=tmp_path, inference={"concurrency": 0})


def test_fake_server_rejects_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="delay_s"):
        FakeLLMServer(delay_s=-1)
