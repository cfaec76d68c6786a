"""The bus behaves the same on both backends: request/reply, queue groups, wildcards, errors.

Every test taking ``bus`` runs twice, against the in-process memory bus and against a real
nats-server (see ``conftest.py``). The NATS-only tests at the end cover connection failures
and a server restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from roost.bus import Bus, Delivery
from roost.bus._nats import NatsBus
from roost.devservers import DevServerError, NatsServer, free_port
from roost.protocol import (
    InvalidRequestError,
    NoRespondersError,
    PayloadTooLargeError,
    RequestMessage,
    ResponseMessage,
    ServiceTimeoutError,
    ServiceUnavailableError,
    decode,
)
from roost.services._base import ServiceWorker, call_service, raise_for_error

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def prefix() -> str:
    """A subject prefix unique to the test, so tests never see each other's traffic."""
    return f"test.{uuid.uuid4().hex[:10]}"


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)


def echo(prefix: bytes = b"") -> Callable[[Delivery], Any]:
    async def handler(d: Delivery) -> None:
        await d.respond(prefix + d.data)

    return handler


class EchoService(ServiceWorker):
    service = "tool"

    async def op_echo(self, request: RequestMessage) -> dict[str, Any]:
        return {"echo": request.body}

    async def op_boom(self, request: RequestMessage) -> dict[str, Any]:
        raise RuntimeError("kaboom")

    async def op_grow(self, request: RequestMessage) -> dict[str, Any]:
        return {"blob": "y" * int(request.body["size"])}


def request_to(worker: ServiceWorker, op: str, **body: Any) -> RequestMessage:
    return RequestMessage(service=worker.service, op=op, body=body, timeout_s=3.0)


# --- both backends -------------------------------------------------------------------------


async def test_request_reply_is_binary_safe(bus: Bus, prefix: str) -> None:
    await bus.subscribe(f"{prefix}.echo", echo(b"re:"))
    assert await bus.request(f"{prefix}.echo", b"hello", timeout=2) == b"re:hello"
    payload = bytes(range(256)) * 64
    assert await bus.request(f"{prefix}.echo", payload, timeout=2) == b"re:" + payload
    assert await bus.request(f"{prefix}.echo", b"", timeout=2) == b"re:"


async def test_queue_group_splits_requests_between_members(bus: Bus, prefix: str) -> None:
    counts: Counter[int] = Counter()

    def member(i: int) -> Callable[[Delivery], Any]:
        async def handler(d: Delivery) -> None:
            counts[i] += 1
            await d.respond(str(i).encode())

        return handler

    for i in range(3):
        await bus.subscribe(f"{prefix}.work", member(i), queue="workers")
    await bus.flush()

    replies = await asyncio.gather(
        *(bus.request(f"{prefix}.work", b"job", timeout=5) for _ in range(60))
    )

    assert sum(counts.values()) == 60  # each request went to exactly one member
    assert set(counts) == {0, 1, 2}, f"every member should get work: {counts}"
    assert Counter(int(r) for r in replies) == counts


async def test_publish_reaches_every_plain_subscriber_and_one_member_per_group(
    bus: Bus, prefix: str
) -> None:
    plain: Counter[int] = Counter()
    group: Counter[int] = Counter()

    def counter(c: Counter[int], i: int) -> Callable[[Delivery], Any]:
        async def handler(d: Delivery) -> None:
            assert d.data == b"news"
            c[i] += 1

        return handler

    for i in range(3):
        await bus.subscribe(f"{prefix}.news", counter(plain, i))
    for i in range(2):
        await bus.subscribe(f"{prefix}.news", counter(group, i), queue="g")
    await bus.flush()

    for _ in range(5):
        await bus.publish(f"{prefix}.news", b"news")
    await bus.flush()

    await eventually(lambda: plain.total() == 15 and group.total() == 5)
    await asyncio.sleep(0.05)  # nothing more arrives
    assert plain == {0: 5, 1: 5, 2: 5}
    assert group.total() == 5


async def test_wildcard_subscriptions(bus: Bus, prefix: str) -> None:
    star: list[str] = []
    rest: list[str] = []

    async def on_star(d: Delivery) -> None:
        star.append(d.subject)

    async def on_rest(d: Delivery) -> None:
        rest.append(d.subject)

    await bus.subscribe(f"{prefix}.ev.*", on_star)
    await bus.subscribe(f"{prefix}.ev.>", on_rest)
    await bus.subscribe(f"{prefix}.svc.*", echo(b"*:"), queue="q")
    await bus.flush()

    for subject in ("ev.a", "ev.a.b", "ev", "other.a", "ev.c"):
        await bus.publish(f"{prefix}.{subject}", b"x")
    await bus.flush()

    await eventually(lambda: len(star) == 2 and len(rest) == 3)
    await asyncio.sleep(0.05)
    assert star == [f"{prefix}.ev.a", f"{prefix}.ev.c"]
    assert rest == [f"{prefix}.ev.a", f"{prefix}.ev.a.b", f"{prefix}.ev.c"]
    # A wildcard subscription serves requests too.
    assert await bus.request(f"{prefix}.svc.anything", b"q", timeout=2) == b"*:q"


async def test_sending_to_wildcard_or_malformed_subjects_is_rejected(bus: Bus, prefix: str) -> None:
    for bad in (f"{prefix}.*", f"{prefix}.>", "", f"{prefix}..x", f"{prefix}.a b"):
        with pytest.raises(InvalidRequestError, match=r"(?i)subject|wildcards"):
            await bus.request(bad, b"", timeout=1)
        with pytest.raises(InvalidRequestError, match=r"(?i)subject|wildcards"):
            await bus.publish(bad, b"")
    with pytest.raises(InvalidRequestError, match="invalid subject"):
        await bus.subscribe(f"{prefix}..x", echo())


async def test_no_responders_fails_fast_and_differs_from_timeout(bus: Bus, prefix: str) -> None:
    started = time.monotonic()
    with pytest.raises(NoRespondersError, match="no service is serving") as no_resp:
        await bus.request(f"{prefix}.nobody", b"hi", timeout=5)
    assert time.monotonic() - started < 1.0, "no-responders must not wait for the timeout"
    assert no_resp.value.retryable

    async def silent(d: Delivery) -> None:
        return None  # takes the request, never answers

    await bus.subscribe(f"{prefix}.silent", silent)
    await bus.flush()
    started = time.monotonic()
    with pytest.raises(ServiceTimeoutError, match=r"within 0.3s") as timed_out:
        await bus.request(f"{prefix}.silent", b"hi", timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.5, elapsed
    assert not isinstance(timed_out.value, NoRespondersError)
    assert timed_out.value.code == "timeout" and no_resp.value.code == "no_responders"


async def test_failing_handler_does_not_kill_the_subscription(bus: Bus, prefix: str) -> None:
    seen: list[bytes] = []

    async def fragile(d: Delivery) -> None:
        seen.append(d.data)
        if d.data == b"bad":
            raise ValueError("cannot handle this")
        await d.respond(b"ok:" + d.data)

    await bus.subscribe(f"{prefix}.fragile", fragile)
    await bus.flush()
    await bus.publish(f"{prefix}.fragile", b"bad")
    await bus.publish(f"{prefix}.fragile", b"bad")
    assert await bus.request(f"{prefix}.fragile", b"good", timeout=2) == b"ok:good"
    assert seen == [b"bad", b"bad", b"good"]


async def test_unsubscribe_stops_delivery(bus: Bus, prefix: str) -> None:
    got: list[bytes] = []

    async def handler(d: Delivery) -> None:
        got.append(d.data)
        await d.respond(b"yes")

    sub = await bus.subscribe(f"{prefix}.unsub", handler)
    await bus.flush()
    assert await bus.request(f"{prefix}.unsub", b"1", timeout=2) == b"yes"

    await sub.unsubscribe()
    await sub.unsubscribe()  # idempotent
    await bus.publish(f"{prefix}.unsub", b"2")
    await bus.flush()
    with pytest.raises(NoRespondersError):
        await bus.request(f"{prefix}.unsub", b"3", timeout=2)
    await asyncio.sleep(0.05)
    assert got == [b"1"]


# --- service workers on both backends ------------------------------------------------------


async def test_service_worker_rejects_garbage_and_keeps_serving(bus: Bus, prefix: str) -> None:
    shard = prefix.replace(".", "-")
    worker = EchoService(bus, shard=shard)
    await worker.start()
    await bus.flush()

    # Garbage with a reply subject gets an error response naming the problem.
    reply = decode(await bus.request(worker.subject, b"\x00not json", timeout=2), ResponseMessage)
    assert not reply.ok and reply.error is not None
    assert reply.error.code == "invalid_message"
    assert "undecodable" in reply.error.message
    # A well-formed message of the wrong kind is rejected as well.
    wrong = decode(
        await bus.request(worker.subject, b'{"kind": "event", "type": "log"}', timeout=2),
        ResponseMessage,
    )
    assert wrong.error is not None and "$.kind" in wrong.error.message
    # Garbage without a reply subject is dropped (and counted).
    await bus.publish(worker.subject, b"{{{")
    await eventually(lambda: worker.rejected == 3)

    response = await call_service(bus, request_to(worker, "echo", x=1), shard=shard)
    assert raise_for_error(response) == {"echo": {"x": 1}}
    assert worker.served == 1 and worker.rejected == 3
    await worker.stop()


async def test_service_op_that_raises_reports_and_keeps_serving(bus: Bus, prefix: str) -> None:
    shard = prefix.replace(".", "-")
    worker = EchoService(bus, shard=shard)
    await worker.start()
    await bus.flush()
    request = request_to(worker, "boom")
    response = await call_service(bus, request, shard=shard)
    assert not response.ok and response.error is not None
    assert response.error.code == "internal"
    assert response.error.message == "RuntimeError: kaboom"
    assert response.correlation_id == request.id

    ok = await call_service(bus, request_to(worker, "echo", n=2), shard=shard)
    assert raise_for_error(ok) == {"echo": {"n": 2}}
    await worker.stop()


async def test_unknown_op_names_the_known_ops(bus: Bus, prefix: str) -> None:
    shard = prefix.replace(".", "-")
    worker = EchoService(bus, shard=shard)
    await worker.start()
    await bus.flush()
    response = await call_service(bus, request_to(worker, "teleport"), shard=shard)
    assert response.error is not None and response.error.code == "unknown_op"
    with pytest.raises(InvalidRequestError) as info:
        raise_for_error(response)
    message = str(info.value)
    assert "'teleport'" in message and "known: boom, echo, grow, ping" in message
    await worker.stop()
    with pytest.raises(NoRespondersError):
        await call_service(bus, request_to(worker, "echo"), shard=shard)


# --- NATS only -----------------------------------------------------------------------------


@pytest.mark.nats
async def test_a_message_over_natss_max_payload_fails_at_once_and_clearly(
    nats_server: NatsServer,
) -> None:
    """A request over NATS' max_payload is refused before sending; an answer over it is
    answered as a ``payload_too_large`` error, not left to time out."""
    async with NatsBus(nats_server.url, client_name="big") as bus:
        big = b"x" * 2_000_000
        began = time.monotonic()
        with pytest.raises(PayloadTooLargeError, match="max_payload") as caught:
            await bus.request("big.request", big, timeout=5)
        assert caught.value.code == "payload_too_large" and time.monotonic() - began < 1
        worker = EchoService(bus, shard="big")
        await worker.start()
        await bus.flush()
        began = time.monotonic()
        grow = request_to(worker, "grow", size=2_000_000)  # a small request, a big answer
        response = await call_service(bus, grow, shard="big")
        assert response.error is not None and response.error.code == "payload_too_large"
        assert time.monotonic() - began < 3
        await worker.stop()


@pytest.mark.nats
async def test_connecting_where_nothing_listens_fails_fast() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    bus = NatsBus(url, connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match="cannot reach NATS") as info:
        await bus.connect()
    assert time.monotonic() - started < 2.0
    assert url in str(info.value)
    assert info.value.retryable
    assert not bus.is_connected


@pytest.mark.nats
@pytest.mark.parametrize("how", ["restart", "kill"])
async def test_bus_reconnects_after_server_restart(how: str) -> None:
    async with NatsServer() as server, NatsBus(server.url) as bus:
        assert isinstance(bus, NatsBus)
        worker = EchoService(bus, shard="restart")
        await worker.start()
        await bus.flush()
        assert (await call_service(bus, request_to(worker, "echo"), shard="restart")).ok

        port = server.port
        if how == "kill":
            server.kill()
        await server.arestart()
        assert server.port == port

        deadline = time.monotonic() + 10
        while True:
            try:
                request = request_to(worker, "echo", again=True)
                response = await call_service(bus, request, shard="restart")
                break
            except (ServiceUnavailableError, ServiceTimeoutError, NoRespondersError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert raise_for_error(response) == {"echo": {"again": True}}
        assert bus.client.stats["reconnects"] >= 1
        assert bus.is_connected
        await worker.stop()


@pytest.mark.nats
def test_dev_server_that_cannot_start_reports_its_output(nats_server: NatsServer) -> None:
    """The NATS dev server used by these tests fails loudly, with the server's own words."""
    clash = NatsServer(port=nats_server.port, startup_timeout=5)
    with pytest.raises(DevServerError, match=r"(?s)exited with code 1.*address already in use"):
        clash.start()
    assert not clash.is_running
    assert nats_server.is_running  # the server holding the port is untouched
