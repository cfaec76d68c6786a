"""``roost server gateway``: where users' tools daemons connect (docs/daemon.md).

One process: the daemons' gRPC stream (``[server] gateway_port``, 9190), the NATS tool
bridge, the frontend proxy (``[server] gateway_frontend_port``, 9191: users' own files,
processes and terminals) and an HTTP port (``[server] gateway_health_port``, 8080: health,
readiness and the terminal WebSocket). It needs the shared
database (daemon tokens are the platform's access tokens) and NATS (the workers reach the
daemons through it).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import grpc

from roost.auth import Authenticator, JwtVerifier, load_verifier
from roost.bus import create_bus
from roost.config import ConfigError, Settings
from roost.gateway import (
    TERMINAL_WS_PATH,
    DaemonFrontend,
    DaemonHub,
    ToolBridge,
    daemon_authenticator,
    frontend_handler,
    start_daemon_server,
    terminal_websocket,
)
from roost.server._health import Check
from roost.server._serve import ApiServer, tls_files
from roost.stores import SqlPrincipalStore, open_stores


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    files = tls_files(settings.server)
    if not files:
        return None
    return grpc.ssl_server_credentials(
        [(Path(files["ssl_keyfile"]).read_bytes(), Path(files["ssl_certfile"]).read_bytes())]
    )


async def _start_frontend(
    frontend: DaemonFrontend,
    host: str,
    port: int,
    credentials: grpc.ServerCredentials | None,
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((frontend_handler(frontend),))
    address = f"{host}:{port}"
    try:
        bound = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address} (the frontend proxy): {exc}") from None
    await server.start()
    return server, bound


async def serve_gateway(settings: Settings, *, announce: Any = print) -> None:
    """Run a gateway until cancelled."""
    if settings.bus.backend != "nats":
        raise ConfigError(
            'a gateway serves daemons to workers in other processes: [bus] backend = "nats" '
            "(--nats-url)"
        )
    config = settings.server
    credentials = _credentials(settings)
    stores = await open_stores(settings.database_url, settings.home)
    bus = None
    server = None
    frontend_server: grpc.aio.Server | None = None
    bridge = None
    hub = None
    try:
        if stores.db is None:
            raise ConfigError("a gateway needs the platform's SQL database for daemon tokens")
        auth = Authenticator(
            SqlPrincipalStore(stores.db),
            cache_s=config.token_cache_s,
            jwt=JwtVerifier.from_config(config),
        )
        hub = DaemonHub(daemon_authenticator(auth), gateway_id=f"gw-{uuid.uuid4().hex[:8]}")
        bus = create_bus(
            "nats",
            settings.bus.url,
            client_name=f"roost-gateway-{hub.gateway_id}",
            user=settings.bus.user,
            password=settings.bus.password(),
        )
        await bus.connect()
        bridge = ToolBridge(hub, bus, grants=load_verifier(settings.bus.grant_public_key_file))
        await bridge.start()
        try:
            server, port = await start_daemon_server(
                hub, config.bind_address, config.gateway_port, credentials=credentials
            )
        except RuntimeError as exc:  # grpc: the port is taken
            raise ConfigError(
                f"cannot listen on {config.bind_address}:{config.gateway_port}: {exc}"
            ) from None
        frontend = DaemonFrontend(bus, auth)
        frontend_server, frontend_port = await _start_frontend(
            frontend, config.bind_address, config.gateway_frontend_port, credentials
        )
        ready_bus = bus

        async def database() -> None:
            await SqlPrincipalStore(stores.db).has_admin()  # type: ignore[arg-type]

        async def nats() -> None:
            await ready_bus.flush(timeout=2.0)

        checks: dict[str, Check] = {"database": database, "bus": nats}
        health_config = config.model_copy(update={"health_port": config.gateway_health_port})
        health = ApiServer(None, health_config, api=False, checks=checks)
        health.health.add_api_websocket_route(TERMINAL_WS_PATH, terminal_websocket(frontend))
        async with health as running:
            assert running.endpoints is not None
            scheme = "TLS" if credentials is not None else "h2c"
            announce(
                f"gateway {hub.gateway_id}: daemons on {config.bind_address}:{port} ({scheme}); "
                f"frontend proxy on {config.bind_address}:{frontend_port}; health on "
                f"{running.endpoints.health}/health and /ready, terminals on "
                f"{running.endpoints.health.replace('http', 'ws', 1)}{TERMINAL_WS_PATH}"
            )
            await asyncio.Event().wait()
    finally:
        if hub is not None:
            hub.close_all()
        if bridge is not None:
            await bridge.close()
        if server is not None:
            await server.stop(grace=2.0)
        if frontend_server is not None:
            await frontend_server.stop(grace=1.0)
        if bus is not None:
            with contextlib.suppress(Exception):
                await bus.close()
        await stores.close()
