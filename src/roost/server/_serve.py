"""Serving the API: two uvicorn servers in this event loop, the API and its health port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from roost.auth import Authenticator, JwtVerifier
from roost.config import ConfigError, ServerConfig, Settings
from roost.platform import Platform
from roost.server._app import create_app
from roost.server._health import Check, health_app
from roost.server._principal import admin_token
from roost.stores import SqlPrincipalStore

log = logging.getLogger("roost.server")

START_TIMEOUT_S = 30.0


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the process owner handles signals
        pass


@dataclass(frozen=True)
class Endpoints:
    """Where a started server listens."""

    api: str
    health: str


class ApiServer:
    """The API and health servers of one replica, on a platform opened by the caller."""

    def __init__(
        self,
        platform: Platform | None,
        config: ServerConfig,
        token: str | None = None,
        *,
        api: bool = True,
        checks: dict[str, Check] | None = None,
    ) -> None:
        """``token``: the static admin token, if there is one; ``api=False``: the health
        port alone (the run worker's); ``checks``: what ``/ready`` asks, if not the
        platform's."""
        self.platform = platform
        self.config = config
        self.app = None
        if api:
            if platform is None:
                raise ValueError("the API needs a platform")
            db = platform.stores.db
            if db is None:
                raise ConfigError("the API server needs a SQL database for its users and tokens")
            auth = Authenticator(
                SqlPrincipalStore(db),
                static_token=token or None,
                cache_s=config.token_cache_s,
                jwt=JwtVerifier.from_config(config),
                create_users=config.jwt_create_users,
            )
            self.app = create_app(platform, config, auth)
        if checks is None:
            if platform is None:
                raise ValueError("a health server without a platform needs its checks")
            checks = readiness_checks(platform)
        self.health = health_app(checks)
        self._servers: list[_Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.endpoints: Endpoints | None = None

    async def start(self) -> Endpoints:
        """Bind both ports and serve; returns their URLs (a port of 0 is chosen here)."""
        config = self.config
        tls = tls_files(config)
        scheme = "https" if tls else "http"
        api = await self._serve(self.app, config.api_port, tls) if self.app is not None else None
        health = await self._serve(self.health, config.health_port, {})
        host = config.bind_address if config.bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
        self.endpoints = Endpoints(
            api=f"{scheme}://{host}:{api}" if api is not None else "",
            health=f"http://{host}:{health}",
        )
        return self.endpoints

    async def _serve(self, app: Any, port: int, tls: dict[str, str]) -> int:
        # a socket bound here, so port 0 gives a known port and a taken port fails clearly
        family = socket.AF_INET6 if ":" in self.config.bind_address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit it: no Nagle delay on a stream's small writes
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.config.bind_address, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen on {self.config.bind_address}:{port}: {exc.strerror}"
            ) from None
        server = _Server(
            uvicorn.Config(
                app,
                log_level="warning",
                lifespan="off",
                timeout_graceful_shutdown=5,
                timeout_keep_alive=self.config.keep_alive_s,
                **tls,  # type: ignore[arg-type]
            )
        )
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn :{port}")
        self._servers.append(server)
        self._tasks.append(task)
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise ConfigError(f"the server on port {port} stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise ConfigError(
                    f"the server on port {port} did not start in {START_TIMEOUT_S:g}s"
                )
            await asyncio.sleep(0.01)
        bound: int = sock.getsockname()[1]
        return bound

    @classmethod
    def health_only(cls, platform: Platform, config: ServerConfig) -> ApiServer:
        """Just the health port, for server types without an API (the run worker)."""
        return cls(platform, config, api=False)

    async def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await task
        self._servers.clear()
        self._tasks.clear()

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def tls_files(config: ServerConfig) -> dict[str, str]:
    """The TLS certificate and key files of ``config`` (none: plain), checked to exist."""
    if config.disable_tls or not (config.tls_cert or config.tls_key):
        return {}
    if not (config.tls_cert and config.tls_key):
        raise ConfigError(
            "TLS needs both server.tls_cert and server.tls_key (--tls-cert, --tls-key)"
        )
    for path in (config.tls_cert, config.tls_key):
        if not Path(path).is_file():
            raise ConfigError(f"TLS: no file {path}")
    return {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}


def readiness_checks(platform: Platform) -> dict[str, Check]:
    """What ``/ready`` asks: the database, the bus and (with durable runs) Temporal."""

    async def database() -> None:
        await platform.stores.registry.list_models()

    async def bus() -> None:
        await platform.bus.flush(timeout=2.0)

    checks: dict[str, Check] = {"database": database, "bus": bus}
    client = getattr(platform.executor, "client", None)
    if client is not None:

        async def temporal() -> None:
            await client.service_client.check_health()

        checks["temporal"] = temporal
    return checks


def check_distributed(settings: Settings) -> None:
    """Refuse a configuration a replica cannot serve: with an external database or Temporal
    (so other processes share the work), events must travel on NATS, not in memory."""
    external = bool(settings.state.url or settings.workflows.temporal_address)
    if external and settings.bus.backend != "nats":
        raise ConfigError(
            "a distributed API server streams run events over NATS: set --nats-url "
            '(bus.backend = "nats"); an in-memory bus cannot see other processes\' events'
        )


async def serve_api(settings: Settings, *, announce: Any = print) -> None:
    """``roost server api``: open the platform, serve until cancelled (SIGINT/SIGTERM)."""
    check_distributed(settings)
    jwt = JwtVerifier.from_config(settings.server)  # a bad key fails here, before any work
    token, token_file = admin_token(settings.server.admin_token, settings.home)
    local = settings.bus.backend == "memory"
    platform = await Platform.open(settings, start_services=local, worker=local, runs=True)
    try:
        async with ApiServer(platform, settings.server, token) as server:
            assert server.endpoints is not None
            announce(f"roost API on {server.endpoints.api} (docs: {server.endpoints.api}/docs)")
            announce(f"health on {server.endpoints.health}/health and /ready")
            if token_file is not None:
                announce(f"admin token in {token_file}")
            if jwt is not None:
                announce(f"accepting JWTs of issuer {jwt.issuer} for audience {jwt.audience}")
            await asyncio.Event().wait()
    finally:
        await platform.close()


async def serve_worker(settings: Settings, *, announce: Any = print) -> None:
    """``roost server worker``: execute durable runs here, with a health port, until
    cancelled. The runs' events go out on the bus for the API replicas to stream."""
    if settings.workflows.engine != "temporal":
        raise ConfigError('a run worker executes durable runs: [workflows] engine = "temporal"')
    local = settings.bus.backend == "memory"
    platform = await Platform.open(settings, start_services=local, worker=True, runs=True)
    try:
        health = ApiServer.health_only(platform, settings.server)
        async with health as server:
            assert server.endpoints is not None
            announce(
                f"run worker on task queue {settings.workflows.task_queue!r}; "
                f"health on {server.endpoints.health}/health and /ready"
            )
            await asyncio.Event().wait()
    finally:
        await platform.close()


__all__ = ["ApiServer", "Endpoints", "check_distributed", "readiness_checks", "serve_api"]
