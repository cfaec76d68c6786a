"""Gateways and daemons in the test process: a :class:`DaemonHub` with its bus bridge and gRPC
server on a loopback port, and a :class:`DaemonClient` connected to a list of gateways."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from roost.auth import GrantVerifier
from roost.bus._nats import NatsBus
from roost.gateway import Authenticate, DaemonHub, ToolBridge, start_daemon_server
from roost.toolsd import DaemonClient, DaemonStopped, Gateway, HostConfig, ToolHost


@dataclass
class RunningGateway:
    hub: DaemonHub
    bridge: ToolBridge
    bus: NatsBus
    server: grpc.aio.Server
    address: Gateway

    async def stop(self) -> None:
        await self.bridge.close()
        await self.server.stop(grace=None)
        await self.bus.close()


async def start_gateway(
    url: str, name: str, authenticate: Authenticate, *, grants: GrantVerifier | None = None
) -> RunningGateway:
    """A gateway ``name`` on NATS ``url`` taking daemons on a free loopback port (checking
    runs' ``grants`` if given)."""
    hub = DaemonHub(authenticate, gateway_id=name)
    bus = NatsBus(url, client_name=name)
    await bus.connect()
    bridge = ToolBridge(hub, bus, grants=grants)
    await bridge.start()
    server, port = await start_daemon_server(hub)
    return RunningGateway(hub, bridge, bus, server, Gateway.parse(f"http://127.0.0.1:{port}"))


@contextlib.asynccontextmanager
async def running_daemon(
    config: Path,
    token: str,
    gateways: list[Gateway],
    *,
    root: Path | None = None,
    policy: str = "",
    mcp: dict[str, Any] | None = None,
) -> AsyncIterator[DaemonClient]:
    """A daemon with its config in ``config`` (``policy`` as its policy.toml, ``mcp`` as its
    mcpServers), connected to one of ``gateways`` as ``token``'s user."""
    config.mkdir(parents=True, exist_ok=True)
    if policy:
        (config / "policy.toml").write_text(policy)
    if mcp:
        (config / "mcp.json").write_text(json.dumps({"mcpServers": mcp}))
    host = ToolHost(HostConfig(config / "policy.toml", config / "mcp.json", default_root=root))
    await host.start()
    client = DaemonClient(host, gateways, token)
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    await asyncio.wait_for(client.connected.wait(), 10)
    try:
        yield client
    finally:
        stop.set()
        with contextlib.suppress(DaemonStopped):  # told to go (replaced, revoked) meanwhile
            await asyncio.wait_for(task, 10)
        await host.close()
