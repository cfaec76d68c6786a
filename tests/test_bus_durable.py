"""Durable delivery behaves the same on both backends (memory and JetStream): publishes are
stored once per message id, consumers acknowledge after their work, failures are redelivered
a bounded number of times, malformed messages are dropped, and consumers sharing a durable
name share the messages. The NATS-only test restarts the server under a consumer."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from roost.bus import Bus, ConsumerOptions, Delivery, DurableDelivery, Reject, Stream
from roost.bus._nats import NatsBus
from roost.devservers import NatsServer
from roost.protocol import ServiceUnavailableError

pytestmark = pytest.mark.timeout(60)

FAST = ConsumerOptions(max_attempts=3, ack_wait_s=5.0, retry_delays_s=(0.05,))


@pytest.fixture
def stream() -> Stream:
    """A stream of the test's own (names and subjects unique per test)."""
    tag = uuid.uuid4().hex[:10]
    return Stream(name=f"TEST_{tag.upper()}", subjects=(f"durable.{tag}.>",))


def subject(stream: Stream, leaf: str = "a") -> str:
    return stream.subjects[0].replace(">", leaf)


async def until(check: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_publish_is_stored_once_per_message_id_and_reaches_live_subscribers(
    bus: Bus, stream: Stream
) -> None:
    await bus.add_stream(stream)
    await bus.add_stream(stream)  # idempotent
    live: list[bytes] = []

    async def on_live(delivery: Delivery) -> None:
        live.append(delivery.data)

    sub = await bus.subscribe(stream.subjects[0], on_live)
    assert await bus.publish_durable(subject(stream), b"one", msg_id="m1")
    assert not await bus.publish_durable(subject(stream), b"one again", msg_id="m1")
    assert await bus.publish_durable(subject(stream, "b"), b"two", msg_id="m2")
    await until(lambda: len(live) >= 2)
    got: list[tuple[str, bytes, int]] = []

    async def handle(delivery: DurableDelivery) -> None:
        got.append((delivery.msg_id, delivery.data, delivery.attempt))

    # a consumer created after the publishes still gets everything the stream keeps
    consumer = await bus.consume(stream, "late", handle, FAST)
    await until(lambda: len(got) == 2)
    assert got == [("m1", b"one", 1), ("m2", b"two", 1)]
    await consumer.unsubscribe()
    await sub.unsubscribe()


async def test_no_stream_is_a_clear_error(bus: Bus) -> None:
    with pytest.raises(ServiceUnavailableError, match="no stream keeps messages on"):
        await bus.publish_durable(f"nowhere.{uuid.uuid4().hex}", b"x", msg_id="m")


async def test_failures_are_redelivered_boundedly_and_rejects_dropped(
    bus: Bus, stream: Stream
) -> None:
    attempts: Counter[str] = Counter()
    done: list[str] = []

    async def handle(delivery: DurableDelivery) -> None:
        attempts[delivery.msg_id] += 1
        if delivery.data == b"poison":
            raise Reject("not a message of ours")
        if delivery.data == b"flaky" and delivery.attempt < 2:
            raise RuntimeError("database briefly down")
        if delivery.data == b"broken":
            raise RuntimeError("always fails")
        done.append(delivery.msg_id)

    consumer = await bus.consume(stream, "worker", handle, FAST)
    for msg_id, data in [("p", b"poison"), ("f", b"flaky"), ("b", b"broken"), ("ok", b"fine")]:
        await bus.publish_durable(subject(stream), data, msg_id=msg_id)
    await until(lambda: attempts["b"] == 3 and "f" in done and "ok" in done)
    await asyncio.sleep(0.5)  # nothing more arrives: the broken one was dropped after 3
    assert attempts == {"p": 1, "f": 2, "b": 3, "ok": 1}
    assert sorted(done) == ["f", "ok"]
    await consumer.unsubscribe()


async def test_members_of_a_durable_consumer_share_the_work_and_it_resumes(
    bus: Bus, stream: Stream
) -> None:
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def member(name: str):  # type: ignore[no-untyped-def]
        async def handle(delivery: DurableDelivery) -> None:
            seen[name].append(delivery.msg_id)
            await asyncio.sleep(0.01)

        return handle

    first = await bus.consume(stream, "shared", member("a"), FAST)
    second = await bus.consume(stream, "shared", member("b"), FAST)
    for i in range(40):
        await bus.publish_durable(subject(stream), b"x", msg_id=f"m{i}")
    await until(lambda: len(seen["a"]) + len(seen["b"]) == 40)
    assert sorted(seen["a"] + seen["b"]) == sorted(f"m{i}" for i in range(40))  # each once
    assert seen["a"] and seen["b"]
    await first.unsubscribe()
    await second.unsubscribe()
    # the durable consumer remembers what it acknowledged: a new member gets only the new
    await bus.publish_durable(subject(stream), b"x", msg_id="after")
    later: list[str] = []

    async def handle(delivery: DurableDelivery) -> None:
        later.append(delivery.msg_id)

    third = await bus.consume(stream, "shared", handle, FAST)
    await until(lambda: later == ["after"])
    await asyncio.sleep(0.2)
    assert later == ["after"]
    await third.unsubscribe()


@pytest.mark.nats
async def test_consumers_survive_a_nats_restart_and_lose_nothing(tmp_path: object) -> None:
    with NatsServer() as server:
        stream = Stream(name="RESTART", subjects=("restart.>",))
        producer = NatsBus(server.url, client_name="producer")
        consumer_bus = NatsBus(server.url, client_name="consumer")
        await producer.connect()
        await consumer_bus.connect()
        got: list[str] = []

        async def handle(delivery: DurableDelivery) -> None:
            got.append(delivery.msg_id)

        consumer = await consumer_bus.consume(stream, "keeper", handle, FAST)
        for i in range(5):
            await producer.publish_durable("restart.x", b"x", msg_id=f"before-{i}")
        await until(lambda: len(got) == 5)
        await consumer.unsubscribe()  # the consumer is away while messages arrive
        for i in range(5):
            await producer.publish_durable("restart.x", b"x", msg_id=f"while-away-{i}")
        await asyncio.to_thread(server.restart)  # the store survives: same port and dir
        await until(lambda: producer.is_connected and consumer_bus.is_connected, timeout=20)
        consumer = await consumer_bus.consume(stream, "keeper", handle, FAST)
        for i in range(3):
            for _ in range(50):  # publishing waits out the reconnect
                try:
                    await producer.publish_durable("restart.x", b"x", msg_id=f"after-{i}")
                    break
                except Exception:
                    await asyncio.sleep(0.1)
        expected = {
            f"{when}-{i}"
            for when, n in (("before", 5), ("while-away", 5), ("after", 3))
            for i in range(n)
        }
        # at least once, in any order: a message handed to the member that left while its
        # fetch was pending comes back after the ack wait
        await until(lambda: set(got) == expected, timeout=20)
        await consumer.unsubscribe()
        await producer.close()
        await consumer_bus.close()
