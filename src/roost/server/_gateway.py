"""``roost server gateway``: where users' tools daemons connect (docs/daemon.md).

One process: the daemons' gRPC stream (``[server] gateway_port``, 9190), the NATS tool
bridge, and a health port (``[server] gateway_health_port``, 8080). It needs the shared
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
from roost.gateway import DaemonHub, ToolBridge, daemon_authenticator, start_daemon_server
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
        ready_bus = bus

        async def database() -> None:
            await SqlPrincipalStore(stores.db).has_admin()  # type: ignore[arg-type]

        async def nats() -> None:
            await ready_bus.flush(timeout=2.0)

        checks: dict[str, Check] = {"database": database, "bus": nats}
        health_config = config.model_copy(update={"health_port": config.gateway_health_port})
        health = ApiServer(None, health_config, api=False, checks=checks)
        async with health as running:
            assert running.endpoints is not None
            scheme = "TLS" if credentials is not None else "h2c"
            announce(
                f"gateway {hub.gateway_id}: daemons on {config.bind_address}:{port} ({scheme}); "
                f"health on {running.endpoints.health}/health and /ready"
            )
            await asyncio.Event().wait()
    finally:
        if hub is not None:
            hub.close_all()
        if bridge is not None:
            await bridge.close()
        if server is not None:
            await server.stop(grace=2.0)
        if bus is not None:
            with contextlib.suppress(Exception):
                await bus.close()
        await stores.close()
