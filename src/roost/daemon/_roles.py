"""What each worker role runs: the role table of ``roostd``.

A worker process looks its role up in :data:`ROLE_RUNNERS` and awaits the runner until
SIGTERM. A runner starts serving, registers with the registry (what it serves, with a
heartbeat: see :class:`~roost.platform.WorkerPresence`), says so with
``await link.ready(**details)`` (the supervisor waits for that before it starts the next
phase), runs until ``stop`` is set, then unregisters, stops serving and returns. An
exception ends the worker with exit code 1 and the supervisor restarts it.

Who opens the database: the coordination services (registry, state, secret, harness) and
the storage workers (kv, vec). The catalog and the data-plane workers (agent, inference,
embedding) reach registry, state and secrets through the coordination services' gRPC
clients, so a node running only those needs NATS and the registry's address, never the
database's credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from roost.config import DATABASE_ROLES, GRPC_PORTS, ROLE_BY_NAME, WORKER_ROLES, Settings
from roost.daemon._env import ENGINE_ENV, INDEX_ENV
from roost.supervisor import WorkerLink

if TYPE_CHECKING:
    from roost.platform import Platform
    from roost.stores import RegistryStore, Stores

__all__ = ["ROLE_RUNNERS", "RoleRunner"]

log = logging.getLogger("roost.daemon")

RoleRunner = Callable[[Settings, WorkerLink, asyncio.Event], Awaitable[None]]
"""``async def runner(settings, link, stop) -> None``: see the module docstring."""


def _index() -> int:
    return int(os.environ.get(INDEX_ENV, "0") or 0)


@contextlib.asynccontextmanager
async def _presence(
    settings: Settings,
    registry: RegistryStore,
    role: str,
    capabilities: dict[str, Any],
    address: str = "",
) -> AsyncIterator[None]:
    """Registered with ``registry`` (heartbeats included) for the duration."""
    from roost.platform import WorkerPresence

    presence = WorkerPresence(
        registry,
        node=settings.distributed.node,
        role=role,
        index=_index(),
        address=address,
        capabilities=capabilities,
        heartbeat_s=settings.distributed.heartbeat_s,
    )
    await presence.start()
    try:
        yield
    finally:
        await presence.stop()


async def _open_platform(
    settings: Settings, *, database: bool, runs: bool = False, worker: bool = False
) -> Platform:
    from roost.platform import Platform, remote_stores

    stores: Stores | None = None
    if not database:
        # another node's registry may still be starting: wait for it (bounded) rather than
        # crash-loop; the other coordination services start after it
        from roost.rpc import SERVICE_NAMES, RpcSecurity, wait_healthy

        config = settings.distributed
        await wait_healthy(
            config.address("registry"), SERVICE_NAMES["registry"], config.start_timeout_s,
            security=RpcSecurity.load(config.security),
        )  # fmt: skip
        stores = remote_stores(settings)
    return await Platform.open(
        settings, start_services=False, worker=worker, runs=runs, stores=stores
    )


async def _serve_bus(role: str, settings: Settings, link: WorkerLink, stop: asyncio.Event) -> None:
    """A data-plane role: its bus services (and, for ``agent``, the Temporal worker that
    executes runs) until ``stop``."""
    from roost.engines import installed_engines

    services: Sequence[str] = ROLE_BY_NAME[role].services
    runs = role == "agent"
    platform = await _open_platform(
        settings, database=role in DATABASE_ROLES, runs=runs, worker=runs
    )
    try:
        engines: list[str] | None = None
        if role in ("inference", "embedding"):
            # one engine ([distributed.workers.inference] llama-cpp = 2), else all installed
            only = os.environ.get(ENGINE_ENV, "")
            engines = [only] if only else installed_engines()
        await platform.start_services(services, engines=engines)
        capabilities: dict[str, Any] = {"services": list(services)}
        if engines is not None:
            capabilities["engines"] = engines
        details: dict[str, object] = {"services": ",".join(services)}
        if runs and settings.workflows.engine == "temporal":
            capabilities["task_queue"] = details["task_queue"] = settings.workflows.task_queue
        async with _presence(settings, platform.stores.registry, role, capabilities):
            await link.ready(**details)
            log.info("serving %s on %s", ", ".join(services), settings.bus.url)
            await stop.wait()
            log.info("stopping")
    finally:
        await platform.close()


async def _serve_grpc(role: str, settings: Settings, link: WorkerLink, stop: asyncio.Event) -> None:
    """A coordination service: its gRPC servicer on ``listen_host`` and the role's port."""
    from roost.platform import coordination_servicers
    from roost.rpc import STORE_ROLES, RpcSecurity, RpcServer, store_servicers

    config = settings.distributed
    if role in STORE_ROLES:
        platform = None
        stores = await _open_stores(settings)
        servicers = store_servicers(stores, [role], node=config.node or None)
    else:  # catalog and harness need the platform (the harness with Temporal)
        platform = await _open_platform(
            settings, database=role == "harness", runs=role == "harness"
        )
        stores = platform.stores
        servicers = coordination_servicers(platform, [role], node=config.node or None)
    try:
        security = RpcSecurity.load(config.security)
        serve = RpcServer(
            servicers, host=config.listen_host, port=config.port(role), security=security
        )
        async with serve as server:
            registry = stores.registry
            expiry = (
                asyncio.create_task(_expire_workers(registry, config.worker_ttl_s))
                if role == "registry"
                else None
            )
            advertised = config.address(role)
            async with _presence(settings, registry, role, {"grpc": role}, advertised):
                await link.ready(address=server.address)
                log.info("serving %s on %s", role, server.address)
                await stop.wait()
                log.info("stopping")
            if expiry is not None:
                expiry.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await expiry
    finally:
        if platform is not None:
            await platform.close()
        else:
            await stores.close()


async def _open_stores(settings: Settings) -> Stores:
    from roost.stores import open_stores

    settings.home.mkdir(parents=True, exist_ok=True)
    return await open_stores(settings.database_url, settings.home)


async def _expire_workers(registry: RegistryStore, ttl_s: float) -> None:
    """Forget workers long dead (10 TTLs: recently dead ones still show in ``roost status``)."""
    from roost.protocol import RoostError

    while True:
        await asyncio.sleep(ttl_s)
        try:
            expired = await registry.expire_workers(10 * ttl_s)
            if expired:
                log.info("forgot %d worker(s) not heard from for %.0f s", expired, 10 * ttl_s)
        except RoostError as exc:
            log.warning("expiring dead workers failed: %s", exc)


async def _serve_projection(
    role: str, settings: Settings, link: WorkerLink, stop: asyncio.Event
) -> None:
    """Write the events stream into the session DAG (``[runtime] record_events =
    "projection"``), through the state service."""
    from roost.runtime import EventProjection

    platform = await _open_platform(settings, database=False)
    try:
        projection = EventProjection(platform.bus, platform.recorder)
        await projection.start()
        try:
            capabilities = {"services": ["projection"]}
            async with _presence(settings, platform.stores.registry, role, capabilities):
                await link.ready(consumer="projection")
                log.info("projecting run events into the session DAG")
                await stop.wait()
                log.info("stopping after %d event(s)", projection.recorded)
        finally:
            await projection.stop()
    finally:
        await platform.close()


def _runner(role: str) -> RoleRunner:
    if role in GRPC_PORTS:
        serve = _serve_grpc
    elif role == "projection":
        serve = _serve_projection
    else:
        serve = _serve_bus

    async def run(settings: Settings, link: WorkerLink, stop: asyncio.Event) -> None:
        await serve(role, settings, link, stop)

    run.__name__ = run.__qualname__ = f"run_{role}"
    run.__doc__ = f"Run one {role} worker."
    return run


#: The runner of each role.
ROLE_RUNNERS: dict[str, RoleRunner] = {role: _runner(role) for role in WORKER_ROLES}
