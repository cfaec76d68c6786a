"""The NATS tool bridge with real NATS, two gateways and a real daemon on loopback: calls
reach only their user's daemon, fire-and-forget requests are taken by one gateway and
forwarded to the holder, and a call survives the death of the daemon's gateway without
running twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli_helpers import await_until
from gateway_helpers import RunningGateway, running_daemon, start_gateway
from roost.auth import GrantSigner, GrantVerifier
from roost.bus import Delivery
from roost.bus._nats import NatsBus
from roost.devservers.nats import NatsServer
from roost.gateway import (
    DaemonCaller,
    DaemonUnavailable,
)
from roost.protocol import RoostError, new_id, subjects
from roost.protocol import daemon as wire
from roost.toolsd import DaemonClient, Gateway

pytestmark = pytest.mark.nats

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


async def _authenticate(token: str) -> str:
    if token not in TOKENS:
        raise PermissionError("unknown daemon token")
    return TOKENS[token]


async def _gateway(url: str, name: str) -> RunningGateway:
    return await start_gateway(url, name, _authenticate)


@dataclass
class Cluster:
    gateways: list[RunningGateway]
    caller: DaemonCaller
    bus: NatsBus


@pytest.fixture
async def cluster(nats_server: NatsServer) -> AsyncIterator[Cluster]:
    gateways = [await _gateway(nats_server.url, f"gw{i}") for i in (1, 2)]
    bus = NatsBus(nats_server.url, client_name="worker")
    await bus.connect()
    yield Cluster(gateways, DaemonCaller(bus, resend_s=1.0), bus)
    await bus.close()
    for gateway in gateways:
        with contextlib.suppress(Exception):
            await gateway.stop()


def _daemon(
    tmp_path: Path, token: str, gateways: list[Gateway]
) -> contextlib.AbstractAsyncContextManager[DaemonClient]:
    root = tmp_path / token
    root.mkdir()
    return running_daemon(root, token, gateways, root=root)


def _shell(command: str) -> dict[str, object]:
    return {"name": "shell", "arguments": {"command": command}}


async def test_a_call_reaches_its_users_daemon_and_no_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    addresses = [g.address for g in cluster.gateways]
    async with _daemon(tmp_path, "tok-alice", addresses) as alice:
        reply = await cluster.caller.call(
            "alice", "tool.call", _shell("echo from-alice"), timeout_s=10
        )
        assert reply.ok and reply.body["output"]["output"].strip() == "from-alice"
        assert reply.connection == alice.connection.connection  # type: ignore[union-attr]
        assert (await cluster.caller.online("alice")) is not None
        assert (await cluster.caller.online("bob")) is None
        # bob has no daemon: a clear, retryable error within the timeout, naming the fix
        with pytest.raises(DaemonUnavailable, match="roost daemon start") as refused:
            await cluster.caller.call("bob", "tool.call", _shell("echo x"), timeout_s=2)
        assert refused.value.retryable
        # a request for alice sent on bob's subject (bob's daemon is connected) never
        # reaches alice's daemon, nor bob's
        async with _daemon(tmp_path, "tok-bob", addresses) as bob:
            forged = wire.DaemonRequest(user="alice", op="tool.call", body=_shell("echo forged"))
            with pytest.raises(Exception, match="within"):
                await cluster.bus.request(
                    subjects.tools_sync("bob"), wire.encode_frame(forged), timeout=1.5
                )
            assert bob.host.calls_run == 0
        # garbage on a user's subject is dropped; the gateways keep serving
        with pytest.raises(Exception, match="within"):
            await cluster.bus.request(subjects.tools_sync("alice"), b"{not json", timeout=1.0)
        assert alice.host.calls_run == 1
        again = await cluster.caller.call("alice", "status", timeout_s=10)
        assert again.ok and again.body["calls_run"] == 1


async def test_fire_and_forget_requests_are_taken_once_and_forwarded_to_the_holder(
    cluster: Cluster, tmp_path: Path
) -> None:
    # the daemon holds a stream to gateway 1 only; the queue group hands requests to both
    async with _daemon(tmp_path, "tok-alice", [cluster.gateways[0].address]) as alice:
        replies: asyncio.Queue[wire.DaemonReply] = asyncio.Queue()

        async def collect(delivery: Delivery) -> None:
            replies.put_nowait(wire.decode_daemon_reply(delivery.data))

        inbox = f"_test.replies.{new_id()}"
        await cluster.bus.subscribe(inbox, collect)
        ids = [new_id() for _ in range(12)]
        for call_id in ids:
            request = wire.DaemonRequest(
                user="alice",
                op="tool.call",
                body=_shell(f"echo {call_id}"),
                id=call_id,
                reply_to=inbox,
            )
            await cluster.bus.publish(subjects.tools_request("alice"), wire.encode_frame(request))
        got = [await asyncio.wait_for(replies.get(), 15) for _ in ids]
        assert sorted(r.id for r in got) == sorted(ids)
        assert all(r.ok and r.body["output"]["output"].strip() == r.id for r in got)
        assert alice.host.calls_run == len(ids)  # each taken by exactly one gateway
        await asyncio.sleep(0.5)
        assert replies.empty()


async def test_a_call_survives_its_gateway_dying_and_runs_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    first, second = cluster.gateways
    async with _daemon(tmp_path, "tok-alice", [first.address, second.address]) as alice:
        assert first.hub.holder("alice") is not None
        call = asyncio.create_task(
            cluster.caller.call(
                "alice", "tool.call", _shell("sleep 2; echo survived"), timeout_s=20
            )
        )
        await asyncio.sleep(0.5)  # the call is running on the daemon
        await first.stop()  # the daemon's gateway dies mid-call
        reply = await asyncio.wait_for(call, 25)
        assert reply.ok and reply.body["output"]["output"].strip() == "survived"
        assert reply.gateway == second.hub.gateway_id  # answered through the other gateway
        assert alice.connects == 2 and alice.host.calls_run == 1  # reconnected; ran once


async def test_gateways_serve_a_run_only_its_owners_daemon(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """With grants on, a request on a user's tools subject runs only with a run grant whose
    owner is that user: a worker running many users' agents reaches no other daemon."""
    key = Ed25519PrivateKey.generate()
    signer = GrantSigner(key)
    gateway = await start_gateway(
        nats_server.url, "gw", _authenticate, grants=GrantVerifier(key.public_key())
    )
    bus = NatsBus(nats_server.url, client_name="worker")
    await bus.connect()
    caller = DaemonCaller(bus, resend_s=1.0, online_ttl_s=0)
    try:
        async with _daemon(tmp_path, "tok-alice", [gateway.address]):
            alices_run = signer.grant("helper", "s1", "main", owner="alice")
            reply = await caller.call("alice", "tool.call", _shell("echo ok"), grant=alices_run)
            assert reply.ok and reply.body["output"]["output"].strip() == "ok"
            assert await caller.online("alice", grant=alices_run) is not None
            refused = {
                "no grant": "",
                "bob's run": signer.grant("helper", "s2", "main", owner="bob"),
                "a forgery": "g2.e30." + "A" * 86,
                "another key's": GrantSigner(Ed25519PrivateKey.generate()).grant(
                    "helper", "s1", "main", owner="alice"
                ),
            }
            for why, grant in refused.items():
                reply = await caller.call("alice", "tool.call", _shell("echo no"), grant=grant)
                assert not reply.ok and reply.error is not None, why
                assert reply.error.code == "auth", (why, reply.error)
            with pytest.raises(RoostError, match="another user's run"):
                await caller.online("alice", grant=refused["bob's run"])
            # the tools subjects carry runs' operations only, grant or not
            request = wire.DaemonRequest(user="alice", op="process_kill", grant=alices_run)
            data = await bus.request(
                subjects.tools_sync("alice"), wire.encode_frame(request), timeout=5
            )
            assert wire.decode_daemon_reply(data).error.code == "invalid_request"  # type: ignore[union-attr]
            # the platform's own operations (the command subject) need no run grant
            status = await caller.call("alice", "status", timeout_s=5)
            assert status.ok and status.body["calls_run"] == 1
    finally:
        await bus.close()
        await gateway.stop()


async def test_a_second_daemon_on_another_gateway_replaces_the_first(
    cluster: Cluster, tmp_path: Path
) -> None:
    """One daemon per user across gateways: the first, on gateway 1, is told it was replaced
    by the one that connected to gateway 2, and stops; calls reach the second."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = running_daemon(
        tmp_path / "one", "tok-alice", [cluster.gateways[0].address], root=tmp_path / "one"
    )
    async with first as daemon_one:
        await asyncio.sleep(1.0)  # a second later: not a race (PRESENCE_RACE_S)
        second = running_daemon(
            tmp_path / "two", "tok-alice", [cluster.gateways[1].address], root=tmp_path / "two"
        )
        async with second:
            await await_until(
                lambda: (
                    cluster.gateways[0].hub.holder("alice") is None
                    and not daemon_one.connected.is_set()
                ),
                5,
                "the first daemon to be let go",
            )
            assert cluster.gateways[0].hub.holder("alice") is None
            assert not daemon_one.connected.is_set()
            holder = cluster.gateways[1].hub.holder("alice")
            await asyncio.sleep(1.5)  # the first does not come back (it was told not to)
            assert cluster.gateways[0].hub.holder("alice") is None
            assert cluster.gateways[1].hub.holder("alice") is holder is not None
            assert daemon_one.connects == 1
            reply = await cluster.caller.call("alice", "tool.call", _shell("pwd"), timeout_s=10)
            assert reply.ok and reply.body["output"]["output"].strip() == str(tmp_path / "two")
