"""What each worker role runs: the role table of ``roostd``.

A worker process looks its role up in :data:`ROLE_RUNNERS` and awaits the runner until
SIGTERM. A runner starts serving, says so with ``await link.ready(**details)`` (the
supervisor waits for that before it starts the next phase), runs until ``stop`` is set,
then stops serving and returns; the process exits when it returns. An exception ends the
worker with exit code 1 and the supervisor restarts it.

The data-plane roles run on :class:`roost.platform.Platform` (imported inside the runners:
the supervisor process never needs it). The coordination roles (registry, state, secret,
catalog, harness) are gRPC services from :mod:`roost.rpc`; ``roostd start`` refuses a
role that has no runner here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from roost.config import GRPC_PORTS, WORKER_ROLES, Settings
from roost.supervisor import WorkerLink

__all__ = ["BUS_ROLES", "DATABASE_ROLES", "ROLE_RUNNERS", "RoleRunner"]

log = logging.getLogger("roost.daemon")

RoleRunner = Callable[[Settings, WorkerLink, asyncio.Event], Awaitable[None]]
"""``async def runner(settings, link, stop) -> None``: see the module docstring."""

#: Roles whose workers use NATS: every role but the gRPC coordination services.
BUS_ROLES: frozenset[str] = frozenset(r for r in WORKER_ROLES if r not in GRPC_PORTS)

#: Roles whose workers open the database (so ``roostd start`` checks that it is reachable).
#: The coordination services and the storage workers do by design. agent, inference and
#: embedding are here only while they run on a whole Platform, which opens every store:
#: once they reach the registry, state and secrets through the gRPC clients, drop them.
DATABASE_ROLES: frozenset[str] = frozenset(
    {"registry", "state", "secret", "catalog", "harness", "kv", "vec"}
    | {"agent", "inference", "embedding"}
)


async def _serve_platform(
    settings: Settings,
    link: WorkerLink,
    stop: asyncio.Event,
    services: Sequence[str],
    *,
    runs: bool = False,
) -> None:
    """Open a Platform (with the Temporal worker when ``runs``), serve ``services`` on the
    bus until ``stop``."""
    from roost.platform import Platform

    platform = await Platform.open(settings, start_services=False, worker=runs, runs=runs)
    try:
        await platform.start_services(services)
        details: dict[str, object] = {"services": ",".join(services)}
        if runs and settings.workflows.engine == "temporal":
            details["task_queue"] = settings.workflows.task_queue
        await link.ready(**details)
        log.info("serving %s on %s", ", ".join(services), settings.bus.url)
        await stop.wait()
        log.info("stopping")
    finally:
        await platform.close()


async def run_agent(settings: Settings, link: WorkerLink, stop: asyncio.Event) -> None:
    """Execute durable agent runs (a Temporal worker on the run task queue) and serve the
    ``tool`` and ``agent`` bus services the runs call."""
    await _serve_platform(settings, link, stop, ["tool", "agent"], runs=True)


async def run_inference(settings: Settings, link: WorkerLink, stop: asyncio.Event) -> None:
    """Serve ``infer`` (chat models) on the bus."""
    await _serve_platform(settings, link, stop, ["infer"])


async def run_embedding(settings: Settings, link: WorkerLink, stop: asyncio.Event) -> None:
    """Serve ``embed`` (embedding models) on the bus."""
    await _serve_platform(settings, link, stop, ["embed"])


async def run_kv(settings: Settings, link: WorkerLink, stop: asyncio.Event) -> None:
    """Serve ``kv`` (versioned object storage) on the bus."""
    await _serve_platform(settings, link, stop, ["kv"])


async def run_vec(settings: Settings, link: WorkerLink, stop: asyncio.Event) -> None:
    """Serve ``vec`` (vector storage) on the bus."""
    await _serve_platform(settings, link, stop, ["vec"])


#: The runner of each role this build can run. Roles of WORKER_ROLES missing here (the gRPC
#: coordination services, until roost.rpc provides them) are refused by ``roostd start``.
ROLE_RUNNERS: dict[str, RoleRunner] = {
    "agent": run_agent,
    "inference": run_inference,
    "embedding": run_embedding,
    "kv": run_kv,
    "vec": run_vec,
}
