"""NATS users and subject permissions per role, on a real nats-server configured by
:func:`roost.bus.nats_authorization`: each role does its work, and nothing else gets
through: no anonymous client, no serving another role's service, no reading another
user's replies, no publishing events from a storage worker."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from roost.bus import BUS_USERS, Bus, Delivery, create_bus, nats_authorization
from roost.devservers import NatsServer
from roost.protocol import NoRespondersError, ServiceTimeoutError, ServiceUnavailableError

pytestmark = pytest.mark.nats

PASSWORDS = {user: secrets.token_urlsafe(16) for user in BUS_USERS}


@pytest.fixture(scope="module")
def secured_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    conf = tmp_path_factory.mktemp("nats") / "auth.conf"
    conf.write_text(nats_authorization(PASSWORDS))
    with NatsServer(jetstream=False, extra_args=["-c", str(conf)]) as server:
        yield server


@pytest.fixture
async def as_user(secured_nats: NatsServer) -> AsyncIterator[object]:
    opened: list[Bus] = []

    async def connect(user: str, password: str | None = None) -> Bus:
        bus = create_bus(
            "nats", secured_nats.url, user=user,
            password=PASSWORDS.get(user, "") if password is None else password,
        )  # fmt: skip
        await bus.connect()
        opened.append(bus)
        return bus

    yield connect
    for bus in opened:
        await bus.close()


async def _answer(delivery: Delivery) -> None:
    await delivery.respond(b"pong:" + bytes(delivery.data))


async def test_nobody_gets_in_without_a_user(secured_nats: NatsServer, as_user) -> None:  # type: ignore[no-untyped-def]
    for user, password in [("", ""), ("kv", "wrong"), ("intruder", "x")]:
        bus = create_bus("nats", secured_nats.url, user=user, password=password)
        with pytest.raises(ServiceUnavailableError, match="(?i)authorization"):
            await bus.connect()
    assert await as_user("kv")  # the right password works


async def test_each_role_does_its_work_and_no_more(as_user) -> None:  # type: ignore[no-untyped-def]
    kv, agent, harness = await as_user("kv"), await as_user("agent"), await as_user("harness")
    # kv serves kv; the agent role's runs call it
    await kv.subscribe("roost.v1.svc.kv", _answer, queue="roost.v1.svc.kv")
    # kv may not serve another role's service: the server never registers the subscription
    await kv.subscribe("roost.v1.svc.infer", _answer, queue="roost.v1.svc.infer")
    await asyncio.sleep(0.2)
    assert await agent.request("roost.v1.svc.kv", b"get", 5) == b"pong:get"
    with pytest.raises(NoRespondersError):
        await agent.request("roost.v1.svc.infer", b"chat", 2)

    # nobody reads another user's replies: kv listens on the agent's inbox, hears nothing
    overheard: list[bytes] = []

    async def eavesdrop(delivery: Delivery) -> None:
        overheard.append(bytes(delivery.data))

    await kv.subscribe("_INBOX_agent.>", eavesdrop)
    await kv.subscribe("_INBOX.>", eavesdrop)
    await asyncio.sleep(0.2)
    assert await agent.request("roost.v1.svc.kv", b"secret-value", 5) == b"pong:secret-value"
    await asyncio.sleep(0.2)
    assert overheard == []

    # runs publish events and the harness watches them; a storage worker cannot publish any
    seen: list[bytes] = []

    async def watch(delivery: Delivery) -> None:
        seen.append(bytes(delivery.data))

    await harness.subscribe("roost.v1.events.>", watch)
    await asyncio.sleep(0.2)
    await agent.publish("roost.v1.events.s1", b"from-a-run")
    await kv.publish("roost.v1.events.s1", b"forged")
    await asyncio.sleep(0.3)
    assert seen == [b"from-a-run"]

    # and the kv user cannot send requests to other services
    await harness.subscribe("roost.v1.svc.tool", _answer, queue="q")  # not harness's either
    with pytest.raises((NoRespondersError, ServiceTimeoutError)):
        await kv.request("roost.v1.svc.agent", b"call", 2)


def test_every_roostd_bus_role_has_a_user() -> None:
    from roost.config import BUS_ROLES

    assert set(BUS_USERS) >= BUS_ROLES and "registry" in BUS_USERS
    text = nats_authorization({"kv": "p"})
    assert '"user": "kv"' in text and "allow_responses" in text


def test_a_nats_config_with_every_user_is_accepted(tmp_path: Path) -> None:
    # nats-server itself parses the whole configuration (every role's permissions)
    conf = tmp_path / "auth.conf"
    conf.write_text(nats_authorization(PASSWORDS))
    with NatsServer(jetstream=False, extra_args=["-c", str(conf)]) as server:
        assert server.is_running


async def test_only_gateways_serve_daemons_and_runs_reach_them_on_the_tools_subjects(
    as_user,
) -> None:  # type: ignore[no-untyped-def]
    gateway, agent, kv = await as_user("gateway"), await as_user("agent"), await as_user("kv")
    operator = await as_user("operator")
    await gateway.subscribe("roost.v1.tools.request.sync.*", _answer)
    await gateway.subscribe("roost.v1.daemon.command.*", _answer)
    heard: list[bytes] = []

    async def impostor(delivery: Delivery) -> None:
        heard.append(bytes(delivery.data))
        await _answer(delivery)

    # the agent role may not pose as a gateway (its subscriptions are never registered)
    await agent.subscribe("roost.v1.tools.request.sync.*", impostor)
    await agent.subscribe("roost.v1.daemon.command.*", impostor)
    await asyncio.sleep(0.2)
    # a run's tool service calls daemons on the tools subject; the platform on the command one
    assert await agent.request("roost.v1.tools.request.sync.u1", b"call", 5) == b"pong:call"
    assert await operator.request("roost.v1.daemon.command.u1", b"ls", 5) == b"pong:ls"
    # a worker running agents cannot send the platform's commands, nor a storage worker calls
    with pytest.raises((NoRespondersError, ServiceTimeoutError)):
        await agent.request("roost.v1.daemon.command.u1", b"kill", 2)
    with pytest.raises((NoRespondersError, ServiceTimeoutError)):
        await kv.request("roost.v1.tools.request.sync.u1", b"call", 2)
    assert heard == []
    # a fire-and-forget result reaches the requester's inbox
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def collect(delivery: Delivery) -> None:
        got.put_nowait(bytes(delivery.data))

    events: list[bytes] = []

    async def watch(delivery: Delivery) -> None:
        events.append(bytes(delivery.data))

    await agent.subscribe("_INBOX_agent.results", collect)
    await (await as_user("harness")).subscribe("roost.v1.events.>", watch)
    await asyncio.sleep(0.2)
    await gateway.publish("roost.v1.events.s1", b"forged")  # nothing else of the platform
    await gateway.publish("_INBOX_agent.results", b"done")
    assert await asyncio.wait_for(got.get(), 5) == b"done"
    await asyncio.sleep(0.2)
    assert events == []
