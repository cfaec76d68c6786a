"""How many connected tools daemons one gateway holds, and what holding them costs.

Three processes on loopback, with a real nats-server:

* the **gateway** (``DaemonHub`` + ``ToolBridge`` + the daemons' gRPC server), beating on
  every stream each ``--heartbeat`` seconds (30 in production);
* a **swarm** of ``--daemons`` real ``DaemonClient`` s, each on its own gRPC channel (its
  own TCP connection, as separate machines would have), sharing one ``ToolHost``;
* this process, which measures the gateway's CPU time (``/proc/<pid>/stat``) and RSS
  while the daemons sit connected, and the latency of tool calls to one of them through
  NATS meanwhile, against the same calls with only that one daemon connected (the baseline
  measured in the same run).

    python benchmarks/daemons.py --daemons 2000 --heartbeat 30 --window 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model
from bus_roundtrip import Result, measure

from roost.bus._nats import NatsBus
from roost.devservers import NatsServer
from roost.gateway import DaemonCaller, DaemonHub, ToolBridge, start_daemon_server
from roost.toolsd import DaemonClient, Gateway, HostConfig, ToolHost

TOOL = {"name": "read_file", "arguments": {"path": "note.txt"}}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


async def _authenticate(token: str) -> str:
    if not token.startswith("bench-"):
        raise PermissionError("bad token")
    return "u" + token.removeprefix("bench-")


# --- the gateway process ------------------------------------------------------------------


async def serve_gateway(nats_url: str, heartbeat_s: float) -> None:
    hub = DaemonHub(_authenticate, heartbeat_s=heartbeat_s, silence_limit_s=heartbeat_s * 4)
    bus = NatsBus(nats_url, client_name="bench-gateway")
    await bus.connect()
    bridge = ToolBridge(hub, bus)
    await bridge.start()
    _server, port = await start_daemon_server(hub)
    print(f"port {port}", flush=True)
    while True:
        await asyncio.sleep(5)
        print(f"connections {len(hub.connections)}", flush=True)


# --- the swarm process --------------------------------------------------------------------


async def run_swarm(port: int, count: int, first: int) -> None:
    root = Path(tempfile.mkdtemp())
    (root / "note.txt").write_text("a short note the tool reads\n")
    host = ToolHost(HostConfig(root / "policy.toml", root / "mcp.json", default_root=root))
    gateway = [Gateway.parse(f"http://127.0.0.1:{port}")]
    stop = asyncio.Event()
    clients = [DaemonClient(host, gateway, f"bench-{first + i}") for i in range(count)]
    tasks = []
    for i, client in enumerate(clients):
        tasks.append(asyncio.create_task(client.run(stop)))
        if i % 100 == 99:  # dial in batches, as daemons coming online over a while would
            await asyncio.sleep(0.05)
    await asyncio.gather(*(c.connected.wait() for c in clients))
    print(f"connected {count}", flush=True)
    while True:
        await asyncio.sleep(5)
        print(f"connected {sum(c.connected.is_set() for c in clients)}", flush=True)


# --- the measuring process ----------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, bufsize=1
    )


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {prefix!r} process ended")
        if line.startswith(prefix):
            return line.split()[1]
    raise TimeoutError(f"no {prefix!r} within {timeout_s:g}s")


async def _calls(caller: DaemonCaller, n: int) -> list[int]:
    async def call() -> object:
        reply = await caller.call("u0", "tool.call", TOOL, timeout_s=10)
        assert reply.ok, reply
        return reply

    await measure(call, 50)
    return await measure(call, n)


async def main(daemons: int, heartbeat_s: float, window_s: float, n: int) -> int:
    procs: list[subprocess.Popen[str]] = []
    with NatsServer() as nats_server:
        try:
            gateway = _spawn("--gateway-process", nats_server.url, str(heartbeat_s))
            procs.append(gateway)
            port = int(_wait_line(gateway, "port", 60))
            bus = NatsBus(nats_server.url, client_name="bench-worker")
            await bus.connect()
            caller = DaemonCaller(bus)
            # the baseline: one daemon connected
            one = _spawn("--swarm-process", str(port), "1", "0")
            procs.append(one)
            await asyncio.to_thread(_wait_line, one, "connected", 60)
            baseline = Result("tool call, 1 daemon connected", await _calls(caller, n), 0)
            idle_cpu0, t0 = _cpu_s(gateway.pid), time.monotonic()
            await asyncio.sleep(min(window_s, 20))
            idle_cpu = (_cpu_s(gateway.pid) - idle_cpu0) / (time.monotonic() - t0)
            # the rest of the swarm
            began = time.monotonic()
            rest = _spawn("--swarm-process", str(port), str(daemons - 1), "1")
            procs.append(rest)
            await asyncio.to_thread(_wait_line, rest, "connected", 600)
            connect_s = time.monotonic() - began
            await asyncio.sleep(heartbeat_s)  # let the connection burst settle into beats
            cpu0, t0 = _cpu_s(gateway.pid), time.monotonic()
            await asyncio.sleep(window_s)
            steady_cpu = (_cpu_s(gateway.pid) - cpu0) / (time.monotonic() - t0)
            loaded = Result(f"tool call, {daemons} daemons connected", await _calls(caller, n), 0)
            rss = _rss_mb(gateway.pid)
            await bus.close()
        finally:
            for proc in reversed(procs):
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)

    beats_per_s = daemons / heartbeat_s
    print(f"machine: {cpu_model()}, {platform.python_implementation()} {platform.python_version()}")
    print(
        f"{daemons} daemons connected to one gateway in {connect_s:.1f}s; "
        f"heartbeat {heartbeat_s:g}s"
    )
    print(f"gateway CPU, 1 daemon:        {idle_cpu * 100:6.2f}% of a core")
    print(
        f"gateway CPU, {daemons} daemons: {steady_cpu * 100:6.2f}% of a core "
        f"({beats_per_s:.0f} beats/s; {steady_cpu / beats_per_s * 1e6:.0f} us of CPU per beat)"
    )
    print(f"gateway RSS: {rss:.0f} MB ({rss * 1024 / daemons:.0f} KB per daemon)")
    print(f"{'':40} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9}")
    for r in (baseline, loaded):
        print(f"{r.name:40} {r.p50:9.1f} {r.pct(90):9.1f} {r.pct(99):9.1f}")
    print(f"ratio p50 loaded / baseline = {loaded.p50 / baseline.p50:.2f}x")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--gateway-process"]:
        asyncio.run(serve_gateway(sys.argv[2], float(sys.argv[3])))
    elif sys.argv[1:2] == ["--swarm-process"]:
        asyncio.run(run_swarm(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("--daemons", type=int, default=2000)
        parser.add_argument("--heartbeat", type=float, default=30.0)
        parser.add_argument("--window", type=float, default=60.0)
        parser.add_argument("--n", type=int, default=500)
        args = parser.parse_args()
        sys.exit(asyncio.run(main(args.daemons, args.heartbeat, args.window, args.n)))
