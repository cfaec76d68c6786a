"""Run grants: a request names its agent, session and branch, and with grants on, a service
believes it only when the run's runtime signed that. Checked on the memory bus and on a
real NATS server with a raw nats-py client that hand-writes its request, as an attacker
with a valid bus connection would."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent_helpers import COUNTER, make_agent
from roost.auth import GrantError, GrantSigner, GrantVerifier, load_signer, write_grant_keys
from roost.bus import Bus
from roost.config import ConfigError, Settings
from roost.platform import Platform
from roost.protocol import (
    KvGet,
    KvPut,
    KvValue,
    RequestMessage,
    ResponseMessage,
    decode,
    encode,
    from_body,
    subjects,
    to_body,
)
from roost.services import call_service
from roost.services.kv import KvService
from roost.stores import Stores, open_stores

KEY = Ed25519PrivateKey.generate()


def request(agent: str = "victim", session: str = "s1", **body: Any) -> RequestMessage:
    return RequestMessage(
        service="kv",
        op="get",
        body=to_body(KvGet(key="k", **body)),
        agent=agent,
        session=session,
        branch="main",
        owner="alice",
        timeout_s=5.0,
    )


def test_a_grant_covers_exactly_its_agent_session_and_branch() -> None:
    signer, verifier = GrantSigner(KEY), GrantVerifier(KEY.public_key())
    stamped = signer.stamp(request())
    verifier.check(stamped)  # covered
    assert signer.stamp(request()).grant == stamped.grant  # one signature per run scope
    refused = {
        "no grant": request(),
        "another agent": msgspec.structs.replace(stamped, agent="other"),
        "another session": msgspec.structs.replace(stamped, session="s2"),
        "another branch": msgspec.structs.replace(stamped, branch="alt"),
        "another owner": msgspec.structs.replace(stamped, owner="mallory"),
        "another key": GrantSigner(Ed25519PrivateKey.generate()).stamp(request()),
        "garbage": msgspec.structs.replace(stamped, grant="g1.bm9wZQ.bm9wZQ"),
        "a changed payload": msgspec.structs.replace(
            stamped, grant=stamped.grant.replace(stamped.grant.split(".")[1], "W10")
        ),
        "expired": GrantSigner(KEY, ttl_s=-1).stamp(request()),
    }
    for case, message in refused.items():
        with pytest.raises(GrantError) as caught:
            verifier.check(message)
        assert caught.value.code == "auth", case


def test_grant_keys_are_made_once_and_bad_ones_name_the_setting(tmp_path: Path) -> None:
    private, public = write_grant_keys(tmp_path / "pki")
    assert private.stat().st_mode & 0o777 == 0o600
    assert write_grant_keys(tmp_path / "pki") == (private, public)
    assert load_signer(private) is not None and load_signer(None) is None
    with pytest.raises(ConfigError, match="grant_key_file .*not a PEM private key"):
        load_signer(public)


@pytest.fixture
async def kv_env(bus: Bus, tmp_path: Path) -> AsyncIterator[tuple[Bus, Stores, KvService]]:
    stores = await open_stores(f"sqlite:///{tmp_path / 'roost.db'}", tmp_path)
    service = KvService(bus, stores.require_kv())
    service.grants = GrantVerifier(KEY.public_key())
    await service.start()
    try:
        yield bus, stores, service
    finally:
        await service.stop()
        await stores.close()


async def test_a_service_refuses_requests_its_grant_does_not_cover(
    kv_env: tuple[Bus, Stores, KvService],
) -> None:
    bus, _, service = kv_env
    signer = GrantSigner(KEY)
    put = RequestMessage(
        service="kv", op="put", body=to_body(KvPut(key="k", value=b"private")),
        agent="victim", session="s1", branch="main", timeout_s=5.0,
    )  # fmt: skip
    assert (await call_service(bus, signer.stamp(put))).ok
    # the attacker's own grant, on a request naming the victim
    forged = msgspec.structs.replace(request(), grant=signer.grant("attacker", "s9", "main"))
    for sent in [request(), forged]:
        response = await call_service(bus, sent)
        assert not response.ok and response.error is not None
        assert response.error.code == "auth", response.error
        assert b"private" not in encode(response)
    # the service kept serving; the victim's own run reads its value
    got = await call_service(bus, signer.stamp(request()))
    assert got.ok and from_body(got.body, KvValue).value == b"private"
    assert service.rejected == 2
    ping = await call_service(bus, RequestMessage(service="kv", op="ping", timeout_s=5.0))
    assert ping.ok  # health needs no grant


@pytest.mark.nats
async def test_a_raw_nats_client_cannot_read_another_agents_kv(
    nats_server: Any, tmp_path: Path
) -> None:
    from roost.bus._nats import NatsBus

    async with NatsBus(nats_server.url) as bus:
        stores = await open_stores(f"sqlite:///{tmp_path / 'roost.db'}", tmp_path)
        service = KvService(bus, stores.require_kv())
        service.grants = GrantVerifier(KEY.public_key())
        await service.start()
        raw = await nats.connect(nats_server.url)
        try:
            hand_written = encode(request())  # "agent": "victim", no grant
            reply = await raw.request(subjects.service("kv"), hand_written, timeout=5)
            response = decode(reply.data, ResponseMessage)
            assert not response.ok and response.error is not None
            assert response.error.code == "auth" and "no run grant" in response.error.message
        finally:
            await raw.close()
            await service.stop()
            await stores.close()


async def test_a_platform_with_grants_on_signs_its_runs_requests(tmp_path: Path) -> None:
    private, public = write_grant_keys(tmp_path / "pki")
    settings = Settings(
        home=tmp_path / "home",
        workflows={"engine": "inprocess"},
        bus={"grant_key_file": private, "grant_public_key_file": public},
    )
    async with await Platform.open(settings) as platform:
        await platform.deploy(make_agent(tmp_path, "counter", COUNTER))
        first = await platform.run("counter", None)
        assert first.ok, first.complete.error
        again = await platform.run("counter", None, session=first.session.id)
        assert again.output == 2  # its KV calls were believed
        # the grant is proof for the services, not history: the DAG never keeps one
        nodes = await platform.session_nodes(first.session.id)
        assert nodes and all("grant" not in node.content for node in nodes)
        started = time.monotonic()
        refused = await call_service(platform.bus, request(agent="counter"))
        assert not refused.ok and refused.error is not None and refused.error.code == "auth"
        assert time.monotonic() - started < 5
