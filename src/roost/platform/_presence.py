"""Worker presence: every worker of a deployment registers what it serves with the registry
and keeps a heartbeat, so the registry knows which capabilities are live right now.

A worker that stops beating (crashed, hung, cut off) counts as dead once its heartbeat is
older than the TTL; deploys and ``roost status`` only trust live workers. A registry that is
down never takes a worker down with it: beats are retried, and a registry that forgot the
worker (expired it, or lost its database) gets a fresh registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

from roost.protocol import RoostError
from roost.stores import RegistryStore, WorkerRecord

log = logging.getLogger("roost.presence")


def default_node() -> str:
    """The node name used when ``[distributed] node`` is empty: the host name."""
    return socket.gethostname() or "node"


class WorkerPresence:
    """Registers one worker and beats until :meth:`stop` (which says goodbye)."""

    def __init__(
        self,
        registry: RegistryStore,
        *,
        node: str,
        role: str,
        index: int = 0,
        address: str = "",
        capabilities: dict[str, Any] | None = None,
        heartbeat_s: float = 2.0,
    ) -> None:
        self.registry = registry
        self.node = node or default_node()
        self.role = role
        self.pid = os.getpid()
        self.worker_id = f"{self.node}/{role}-{index}"
        self.address = address
        self.capabilities = dict(capabilities or {})
        self.heartbeat_s = heartbeat_s
        self._task: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()

    async def start(self) -> WorkerRecord:
        """Register now (failing loudly if the registry cannot be reached), then beat in
        the background."""
        record = await self._register()
        self._task = asyncio.create_task(self._beat(), name=f"presence-{self.worker_id}")
        return record

    async def _register(self) -> WorkerRecord:
        record = await self.registry.register_worker(
            self.worker_id,
            node=self.node,
            role=self.role,
            pid=self.pid,
            address=self.address,
            capabilities=self.capabilities,
        )
        self.registered.set()
        return record

    async def _beat(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                if not await self.registry.heartbeat_worker(self.worker_id):
                    log.warning(
                        "%s: the registry had forgotten this worker; registering again",
                        self.worker_id,
                    )
                    await self._register()
                if failing:
                    log.warning("%s: heartbeats reach the registry again", self.worker_id)
                failing = False
            except (RoostError, OSError) as exc:
                if not failing:
                    log.warning("%s: heartbeat failed (will keep trying): %s", self.worker_id, exc)
                failing = True

    async def stop(self) -> None:
        """Stop beating and unregister (best effort: the TTL covers a registry that is gone)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(RoostError, OSError):
            await asyncio.wait_for(self.registry.remove_worker(self.worker_id), timeout=2.0)


def serving(workers: list[WorkerRecord], service: str) -> list[WorkerRecord]:
    """The workers among ``workers`` that serve bus service ``service``."""
    return [w for w in workers if service in w.capabilities.get("services", [])]


def engines_served(workers: list[WorkerRecord], service: str) -> set[str]:
    """The engines that some worker serving ``service`` (``infer``, ``embed``) runs. A worker
    that lists no engines serves every engine."""
    found: set[str] = set()
    for worker in serving(workers, service):
        engines = worker.capabilities.get("engines")
        found.update(engines if engines else ["*"])
    return found
