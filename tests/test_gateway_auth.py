"""Daemon tokens are the platform's access tokens: the gateway takes only ``daemon``-scoped
tokens of real users, and a token revoked through the API loses its daemon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api_helpers import Api, api_server, make_user
from roost.auth import Authenticator
from roost.gateway import DaemonHub, daemon_authenticator, start_daemon_server
from roost.stores import SqlPrincipalStore
from roost.toolsd import DaemonClient, DaemonStopped, Gateway, HostConfig, ToolHost


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with api_server(tmp_path / "server") as server:
        yield server


@pytest.fixture
async def gateway(api: Api) -> AsyncIterator[tuple[DaemonHub, Gateway]]:
    # the gateway's own authenticator on the platform's database, as in its own process
    assert api.platform.stores.db is not None
    auth = Authenticator(SqlPrincipalStore(api.platform.stores.db), cache_s=0.5)
    hub = DaemonHub(daemon_authenticator(auth), heartbeat_s=0.2)
    server, port = await start_daemon_server(hub)
    yield hub, Gateway.parse(f"http://127.0.0.1:{port}")
    hub.close_all()
    await server.stop(grace=None)


def _client(tmp_path: Path, token: str, address: Gateway) -> DaemonClient:
    root = tmp_path / "daemon"
    root.mkdir(exist_ok=True)
    host = ToolHost(HostConfig(root / "policy.toml", root / "mcp.json", default_root=root))
    return DaemonClient(host, [address], token)


async def test_only_daemon_scoped_tokens_connect_and_a_revoked_one_is_dropped(
    api: Api, gateway: tuple[DaemonHub, Gateway], tmp_path: Path
) -> None:
    hub, address = gateway
    _carol, plain = await make_user(api, "carol", scopes=["read", "runs:write"])
    with pytest.raises(DaemonStopped, match="lacks the 'daemon' scope"):
        await asyncio.wait_for(_client(tmp_path, plain, address).run(asyncio.Event()), 10)
    with pytest.raises(DaemonStopped, match="unknown, expired or revoked"):
        await asyncio.wait_for(
            _client(tmp_path, "roost_pat_" + "x" * 40, address).run(asyncio.Event()), 10
        )
    dave_user, token = await make_user(api, "dave", scopes=["daemon", "tokens:write"])
    client = _client(tmp_path, token, address)
    task = asyncio.create_task(client.run(asyncio.Event()))
    await asyncio.wait_for(client.connected.wait(), 10)
    holder = hub.holder(client.connection.user)  # type: ignore[union-attr]
    assert holder is not None and holder.user == dave_user["id"]
    async with api.client(token) as dave:
        mine = (await dave.get("/api/v1/tokens")).json()
        assert (await dave.delete(f"/api/v1/tokens/{mine[0]['id']}")).status_code == 204
    with pytest.raises(DaemonStopped, match="revoked"):
        await asyncio.wait_for(task, 10)
    assert hub.holder(holder.user) is None
