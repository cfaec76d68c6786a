"""Round trip of a daemon tool call, worker -> NATS -> gateway -> daemon -> back, against its
raw hops measured in the same run.

Measures, one call in flight at a time, on a real nats-server started here:

  (a) raw nats-py request/reply (echo responder),
  (b) raw gRPC bidirectional stream echo (one stream, like the daemon's),
  (c) the daemon's own work for the call (``ToolHost.handle`` in-process, no transport),
  (d) roost: ``DaemonCaller.call`` -> NATS -> ``ToolBridge`` -> ``DaemonHub`` -> gRPC stream
      -> ``DaemonClient`` -> ``ToolHost`` -> back,

and checks the target: (d) - (c) <= 1.5x ((a) + (b)), i.e. what roost adds on top of the
tool's own work costs at most 1.5x the two raw hops it rides on.

    python benchmarks/tools.py --n 2000 --warmup 200 --rounds 10

The four are measured in interleaved rounds (a, b, c, d, a, b, ...), so a noisy neighbour on
a shared machine slows them alike; the ratio is the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import nats
from _machine import cpu_model
from bus_roundtrip import Call, Result, measure

from roost.bus._nats import NatsBus
from roost.devservers import NatsServer
from roost.gateway import DaemonCaller, DaemonHub, ToolBridge, start_daemon_server
from roost.protocol import new_id
from roost.toolsd import DaemonClient, Gateway, HostConfig, ToolHost

RATIO_TARGET = 1.5
TOOL = {"name": "read_file", "arguments": {"path": "note.txt"}}


@contextlib.asynccontextmanager
async def raw_nats(url: str, payload: bytes) -> AsyncIterator[Call]:
    server = await nats.connect(url)
    client = await nats.connect(url)

    async def respond(msg: Any) -> None:
        await msg.respond(msg.data)

    await server.subscribe("bench.raw", cb=respond)
    await server.flush()

    async def call() -> object:
        return await client.request("bench.raw", payload, timeout=5)

    try:
        yield call
    finally:
        await client.close()
        await server.close()


@contextlib.asynccontextmanager
async def raw_grpc_stream(payload: bytes) -> AsyncIterator[Call]:
    async def echo(requests: Any, context: Any) -> AsyncIterator[bytes]:
        async for data in requests:
            yield data

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo", {"Stream": grpc.stream_stream_rpc_method_handler(echo)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    outbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def frames() -> AsyncIterator[bytes]:
        while True:
            yield await outbox.get()

    stream = channel.stream_stream("/bench.Echo/Stream")(frames())

    async def call() -> object:
        outbox.put_nowait(payload)
        return await stream.read()

    try:
        yield call
    finally:
        stream.cancel()
        await channel.close()
        await server.stop(None)


async def authenticate(token: str) -> str:
    if token != "bench-token":
        raise PermissionError("bad token")
    return "bench-user"


async def main(n: int, warmup: int, rounds: int) -> int:
    """Measure the four paths in ``rounds`` interleaved rounds of ``n / rounds`` calls each,
    so a noisy neighbour slows all of them alike; the ratio is the median of the rounds'."""
    loop = asyncio.get_running_loop()
    names = [
        "(a) raw nats-py request",
        "(b) raw gRPC bidi stream echo",
        "(c) ToolHost.handle, in-process",
        "(d) roost daemon tool call",
    ]
    samples: dict[str, list[int]] = {name: [] for name in names}
    walls: dict[str, float] = dict.fromkeys(names, 0.0)
    round_ratios: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, NatsServer() as nats_server:
        root = Path(tmp)
        (root / "note.txt").write_text("a short note the tool reads\n")
        host = ToolHost(HostConfig(root / "policy.toml", root / "mcp.json", default_root=root))
        await host.start()
        local = await host.handle(new_id(), "tool.call", TOOL, 10)
        payload = json.dumps({"id": new_id(), "ok": True, "body": local}).encode()

        async def host_only() -> object:
            return await host.handle(new_id(), "tool.call", TOOL, 10)

        hub = DaemonHub(authenticate)
        gateway_bus = NatsBus(nats_server.url, client_name="gateway")
        worker_bus = NatsBus(nats_server.url, client_name="worker")
        await gateway_bus.connect()
        await worker_bus.connect()
        bridge = ToolBridge(hub, gateway_bus)
        await bridge.start()
        server, port = await start_daemon_server(hub)
        client = DaemonClient(host, [Gateway.parse(f"http://127.0.0.1:{port}")], "bench-token")
        stop = asyncio.Event()
        daemon = asyncio.create_task(client.run(stop))
        await asyncio.wait_for(client.connected.wait(), 10)
        caller = DaemonCaller(worker_bus)

        async def roost_call() -> object:
            reply = await caller.call("bench-user", "tool.call", TOOL, timeout_s=10)
            assert reply.ok and not reply.body.get("is_error"), reply
            return reply

        async with (
            raw_nats(nats_server.url, payload) as nats_call,
            raw_grpc_stream(payload) as grpc_call,
        ):
            paths = (nats_call, grpc_call, host_only, roost_call)
            calls: dict[str, Call] = dict(zip(names, paths, strict=True))
            for call in calls.values():
                await measure(call, warmup)
            per_round = max(1, n // rounds)
            for _ in range(rounds):
                medians = {}
                for name, call in calls.items():
                    started = loop.time()
                    got = await measure(call, per_round)
                    walls[name] += loop.time() - started
                    samples[name] += got
                    medians[name] = Result(name, got, 0).p50
                a, b, c, d = (medians[name] for name in names)
                round_ratios.append((d - c) / (a + b))
        stop.set()
        await daemon
        await bridge.close()
        await server.stop(None)
        await worker_bus.close()
        await gateway_bus.close()
        await host.close()

    results = [Result(name, samples[name], walls[name]) for name in names]
    print(f"machine: {cpu_model()}, {platform.python_implementation()} {platform.python_version()}")
    print(f"{'':36} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9} {'calls/s':>9}")
    for r in results:
        row = r.row()
        print(
            f"{r.name:36} {row['p50_us']:>9} {row['p90_us']:>9} {row['p99_us']:>9} "
            f"{row['calls_per_s']:>9}"
        )
    a, b, c, d = (r.p50 for r in results)
    ratio = statistics.median(round_ratios)
    print(f"\nroost's added cost (d - c) = {d - c:.1f} us; raw hops (a + b) = {a + b:.1f} us")
    print(
        f"ratio (d - c) / (a + b), median of {rounds} interleaved rounds = {ratio:.2f}x "
        f"(rounds from {min(round_ratios):.2f}x to {max(round_ratios):.2f}x; "
        f"target <= {RATIO_TARGET}x)"
    )
    print(f"ratio d / (a + b + c) = {d / (a + b + c):.2f}x")
    ok = ratio <= RATIO_TARGET
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.n, args.warmup, args.rounds)))
