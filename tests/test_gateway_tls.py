"""A daemon reaching a TLS gateway: verified against a CA (``tls``), pinned to whatever
certificate the gateway shows (``insecure_tls_skip_verify``), and refused when it cannot
verify it or speaks h2c to a TLS port. Real gRPC servers and certificates on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from roost.gateway import DaemonHub, start_daemon_server
from roost.rpc import write_cluster_credentials
from roost.toolsd import DaemonClient, Gateway, HostConfig, ToolHost


async def _authenticate(token: str) -> str:
    if token != "tok":
        raise PermissionError("unknown token")
    return "alice"


@pytest.fixture
async def tls_gateway(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """A gateway serving TLS with a certificate of a fresh CA: its port and the CA file."""
    security = write_cluster_credentials(tmp_path / "pki", ["gateway"], mtls=False)["gateway"]
    assert security.key_file and security.cert_file and security.ca_file
    credentials = grpc.ssl_server_credentials(
        [(security.key_file.read_bytes(), security.cert_file.read_bytes())]
    )
    server, port = await start_daemon_server(DaemonHub(_authenticate), credentials=credentials)
    yield port, security.ca_file
    await server.stop(grace=None)


async def _connects(tmp_path: Path, gateway: Gateway, ca_file: Path | None, wait_s: float) -> bool:
    host = ToolHost(HostConfig(tmp_path / "p.toml", tmp_path / "m.json", default_root=tmp_path))
    client = DaemonClient(host, [gateway], "tok", ca_file=str(ca_file) if ca_file else None)
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.connected.wait(), wait_s)
        return client.connected.is_set()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await host.close()


async def test_tls_modes(tls_gateway: tuple[int, Path], tmp_path: Path) -> None:
    port, ca_file = tls_gateway
    # https implies TLS, verified against the CA the operator gave the daemon
    assert await _connects(tmp_path, Gateway.parse(f"https://127.0.0.1:{port}"), ca_file, 10)
    # a self-signed set-up without the CA at hand: pinned to the certificate shown
    skip = Gateway.parse(f"127.0.0.1:{port}", tls_mode="insecure_tls_skip_verify")
    assert await _connects(tmp_path, skip, None, 10)
    # TLS against the system's roots cannot verify this CA's certificate: never connected
    assert not await _connects(tmp_path, Gateway.parse(f"https://127.0.0.1:{port}"), None, 3)
    # nor does h2c to a TLS port
    assert not await _connects(tmp_path, Gateway.parse(f"http://127.0.0.1:{port}"), None, 3)
