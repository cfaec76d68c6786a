"""A real tools daemon client on a real gateway gRPC stream on loopback: calls, replacement,
refused tokens, heartbeats and silence."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cli_helpers import await_until
from roost.gateway import DaemonHub, DaemonOffline, start_daemon_server
from roost.protocol import daemon as wire
from roost.toolsd import DaemonClient, DaemonStopped, Gateway, HostConfig, ToolHost

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


async def _authenticate(token: str) -> str:
    user = TOKENS.get(token)
    if user is None:
        raise PermissionError("unknown or revoked daemon token")
    return user


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[DaemonHub, Gateway]]:
    hub = DaemonHub(_authenticate, gateway_id="gw1", heartbeat_s=0.2, silence_limit_s=1.0)
    server, port = await start_daemon_server(hub)
    yield hub, Gateway.parse(f"http://127.0.0.1:{port}")
    hub.close_all()
    await server.stop(grace=None)


def _host(tmp_path: Path, name: str) -> ToolHost:
    root = tmp_path / name
    root.mkdir()
    return ToolHost(HostConfig(root / "policy.toml", root / "mcp.json", default_root=root))


async def _start(client: DaemonClient) -> tuple[asyncio.Event, asyncio.Task[str]]:
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    await asyncio.wait_for(client.connected.wait(), 10)
    return stop, task


async def _stop(stop: asyncio.Event, task: asyncio.Task[str]) -> None:
    stop.set()
    with contextlib.suppress(DaemonStopped):
        await asyncio.wait_for(task, 10)


async def test_a_call_reaches_the_users_daemon_and_only_theirs(
    gateway: tuple[DaemonHub, Gateway], tmp_path: Path
) -> None:
    hub, address = gateway
    client = DaemonClient(_host(tmp_path, "a"), [address], "tok-alice")
    stop, task = await _start(client)
    reply = await hub.call(
        "alice", "tool.call", {"name": "shell", "arguments": {"command": "echo hi"}},
        timeout_s=10, call_id="c1",
    )  # fmt: skip
    assert reply.ok and reply.body["output"]["output"].strip() == "hi", reply
    assert reply.connection == client.connection.connection  # type: ignore[union-attr]
    with pytest.raises(DaemonOffline):
        await hub.call("bob", "status", {}, timeout_s=5, call_id="c2")
    # a repeated call id is answered from the daemon's memory, not run again
    again = await hub.call("alice", "tool.call", {"name": "shell", "arguments": {"command": "echo other"}},
                           timeout_s=10, call_id="c1")  # fmt: skip
    assert again.body == reply.body and client.host.calls_run == 1
    await _stop(stop, task)


async def test_a_second_daemon_replaces_the_first(
    gateway: tuple[DaemonHub, Gateway], tmp_path: Path
) -> None:
    hub, address = gateway
    first = DaemonClient(_host(tmp_path, "a"), [address], "tok-alice")
    stop1, task1 = await _start(first)
    second = DaemonClient(_host(tmp_path, "b"), [address], "tok-alice")
    stop2, task2 = await _start(second)
    with pytest.raises(DaemonStopped, match="another daemon"):
        await asyncio.wait_for(task1, 10)
    holder = hub.holder("alice")
    assert holder is not None and holder.hello.daemon_id == second.daemon_id
    await _stop(stop2, task2)
    stop1.set()


async def test_two_daemons_accepted_at_once_by_two_gateways_keep_one(
    gateway: tuple[DaemonHub, Gateway], tmp_path: Path
) -> None:
    """Each gateway hears of the other's daemon; both settle on the same one (by connection
    id), with no clock of either host involved."""
    hub, address = gateway
    client = DaemonClient(_host(tmp_path, "a"), [address], "tok-alice")
    stop, task = await _start(client)
    held = hub.holder("alice")
    assert held is not None
    lower = wire.DaemonPresence(user="alice", gateway="gw-x", connection="0" * 32)
    assert not hub.replaced_elsewhere(lower)  # ours has the higher id: ours stays
    assert hub.replaced_elsewhere(wire.DaemonPresence("alice", "gw-x", "f" * 32))
    assert hub.holder("alice") is None
    with pytest.raises(DaemonStopped, match="another daemon of this user connected"):
        await asyncio.wait_for(task, 10)
    stop.set()


async def test_a_refused_token_stops_the_daemon(
    gateway: tuple[DaemonHub, Gateway], tmp_path: Path
) -> None:
    _hub, address = gateway
    client = DaemonClient(_host(tmp_path, "a"), [address], "tok-mallory")
    with pytest.raises(DaemonStopped, match="refused the daemon's token"):
        await asyncio.wait_for(client.run(asyncio.Event()), 10)


async def test_a_token_of_another_user_than_expected_stops_the_daemon(
    gateway: tuple[DaemonHub, Gateway], tmp_path: Path
) -> None:
    """``roost daemon start --token T --user-id bob`` with alice's token: told, not served."""
    hub, address = gateway
    client = DaemonClient(_host(tmp_path, "a"), [address], "tok-alice", expected_user="bob")
    with pytest.raises(DaemonStopped, match="belongs to user alice, not bob"):
        await asyncio.wait_for(client.run(asyncio.Event()), 10)
    # the daemon hung up: the gateway lets the stream go
    await await_until(lambda: hub.holder("alice") is None, 5, "the gateway to drop the stream")
    assert hub.holder("alice") is None


async def test_a_revoked_daemon_is_told_and_does_not_come_back(
    gateway: tuple[DaemonHub, Gateway], tmp_path: Path
) -> None:
    hub, address = gateway
    client = DaemonClient(_host(tmp_path, "a"), [address], "tok-alice")
    _stop_event, task = await _start(client)
    assert hub.disconnect("alice", "revoked", "the daemon's token was revoked", reconnect=False)
    with pytest.raises(DaemonStopped, match="revoked"):
        await asyncio.wait_for(task, 10)
    assert hub.holder("alice") is None


async def test_heartbeats_keep_a_daemon_and_silence_drops_it(
    gateway: tuple[DaemonHub, Gateway], tmp_path: Path
) -> None:
    hub, address = gateway
    client = DaemonClient(_host(tmp_path, "a"), [address], "tok-alice")
    stop, task = await _start(client)
    await asyncio.sleep(1.5)  # longer than the silence limit: the beats' echoes keep it
    holder = hub.holder("alice")
    assert holder is not None
    holder.last_seen -= 10  # as if the daemon had said nothing for 10 s
    for _ in range(50):
        if hub.holder("alice") is not holder:
            break
        await asyncio.sleep(0.1)
    assert hub.holder("alice") is not holder  # dropped; the daemon reconnects on its own
    for _ in range(150):  # the daemon reconnects by itself
        if client.connects == 2 and hub.holder("alice") is not None:
            break
        await asyncio.sleep(0.1)
    assert client.connects == 2 and hub.holder("alice") is not None
    await _stop(stop, task)
