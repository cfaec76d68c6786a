"""Workers announce what they serve to the registry with heartbeats; deploys trust only live
workers, and a worker outlives a registry outage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import make_agent
from roost.agents import ManifestError
from roost.config import Settings
from roost.platform import Platform, WorkerPresence
from roost.protocol import ServiceUnavailableError
from roost.stores import RegistryStore, WorkerRecord


async def test_presence_registers_beats_and_says_goodbye(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, workflows={"engine": "inprocess"})
    async with await Platform.open(settings) as platform:
        registry = platform.stores.registry
        presence = WorkerPresence(
            registry,
            node="n1",
            role="inference",
            index=2,
            capabilities={"services": ["infer"], "engines": ["llama-cpp"]},
            heartbeat_s=0.05,
        )
        record = await presence.start()
        assert (record.id, record.role, record.node) == ("n1/inference-2", "inference", "n1")
        await asyncio.sleep(0.2)
        [beating] = await registry.list_workers(live_within_s=0.1)
        assert beating.heartbeat_at > record.heartbeat_at
        await registry.remove_worker(record.id)  # the registry forgets it (expired)
        await asyncio.sleep(0.2)
        assert [w.id for w in await registry.list_workers()] == [record.id]  # back again
        await presence.stop()
        assert await registry.list_workers() == []


class _FlakyRegistry:
    """A registry client whose server is down for a while (what a gRPC client raises)."""

    def __init__(self, real: RegistryStore) -> None:
        self.real = real
        self.down = False
        self.failures = 0

    async def heartbeat_worker(self, worker_id: str, capabilities: Any = None) -> bool:
        if self.down:
            self.failures += 1
            raise ServiceUnavailableError("registry at 127.0.0.1:9090 is unreachable")
        return await self.real.heartbeat_worker(worker_id, capabilities)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_a_registry_outage_does_not_stop_the_worker(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, workflows={"engine": "inprocess"})
    async with await Platform.open(settings) as platform:
        flaky = _FlakyRegistry(platform.stores.registry)
        presence = WorkerPresence(flaky, node="n", role="kv", heartbeat_s=0.03)  # type: ignore[arg-type]
        await presence.start()
        flaky.down = True
        await asyncio.sleep(0.2)
        assert flaky.failures >= 3 and presence._task is not None and not presence._task.done()
        flaky.down = False
        before = (await platform.stores.registry.list_workers())[0].heartbeat_at
        await asyncio.sleep(0.15)
        after = (await platform.stores.registry.list_workers())[0].heartbeat_at
        assert after > before
        await presence.stop()


async def _register(registry: RegistryStore, role: str, **caps: Any) -> WorkerRecord:
    return await registry.register_worker(
        f"n/{role}-0", node="n", role=role, pid=1, capabilities=caps
    )


async def test_deploy_checks_requirements_against_live_workers(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", workflows={"engine": "inprocess"})
    chat = make_agent(
        tmp_path, "chatty", "async def run(ctx, input):\n    return 1\n", services=("infer",)
    )
    async with await Platform.open(settings) as platform:
        registry = platform.stores.registry
        await platform.deploy(chat)  # no registered workers: local mode, in-process services
        await _register(registry, "kv", services=["kv"])
        with pytest.raises(ManifestError, match=r"services'.*no live worker serves infer"):
            await platform.deploy(chat)
        await _register(registry, "inference", services=["infer"], engines=["ollama"])
        with pytest.raises(
            ManifestError,
            match=r"models.chat'.*engine 'llama-cpp', which no live infer worker serves "
            r"\(live engines: ollama\)",
        ):
            await platform.deploy(chat)
        await _register(registry, "inference", services=["infer"], engines=["llama-cpp"])
        assert (await platform.deploy(chat)).version == 2
        # a worker whose heartbeat is older than the TTL is dead: its capability is gone
        platform.settings.distributed.worker_ttl_s = 0.05
        await asyncio.sleep(0.1)
        await _register(registry, "kv", services=["kv"])
        with pytest.raises(ManifestError, match="no live worker serves infer"):
            await platform.deploy(chat)
