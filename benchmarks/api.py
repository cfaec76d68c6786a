"""The API server under load, against baselines measured in the same run.

1. ``get``: requests/s of ``GET /api/v1/runs/{id}`` against a bare FastAPI endpoint doing
   the same read (``platform.harness.get_run``) with no auth, errors or schemas; each server
   is a child process on loopback, the load comes from this process (target: <= 1.5x).
2. ``latency``: run start -> first event through the API (``POST /runs`` then its SSE
   stream) against the same run started in-process (``platform.run`` with ``on_event``);
   p50 overhead (target: <= 20 ms).
3. ``auth``: the p50 of one request authenticated with a personal access token against
   the same request with the static admin token (target: <= 1.1x).
4. ``streams``: 200 concurrent SSE streams on one replica (a child process), each
   following its own run to the end; every event must arrive.

Runs use the in-process executor on SQLite and the memory bus (the monolith), so what is
measured is the API's own cost, not Temporal's.

    .venv/bin/python benchmarks/api.py                 # all three
    .venv/bin/python benchmarks/api.py --streams 200 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

TOKEN = "bench-admin-token-0123456789"
AGENT = """
import asyncio
import time

async def run(ctx, input):
    input = input or {}
    if "at" in input:  # start emitting at this wall-clock time (every stream attached)
        await asyncio.sleep(max(0.0, float(input["at"]) - time.time()))
    for i in range(int(input.get("events", 3))):
        await ctx.emit(f"step {i}", i=i)
        await asyncio.sleep(float(input.get("pause", 0.0)))
    return {"reply": "done"}
"""


# --- the child servers --------------------------------------------------------------------


async def _serve(kind: str, home: Path) -> None:
    """A child process: the roost API, or the bare baseline, on one platform; prints its
    URL and one run id, then serves until killed."""
    from fastapi import FastAPI

    from agent_helpers import make_agent
    from roost.auth import DEFAULT_TENANT, Authenticator
    from roost.config import ServerConfig, Settings
    from roost.platform import Platform
    from roost.server import ApiServer
    from roost.stores import SqlPrincipalStore

    settings = Settings(home=home, workflows={"engine": "inprocess"})
    platform = await Platform.open(settings)
    await platform.deploy(make_agent(home / "src", "bench", AGENT, services=()))
    result = await platform.run("bench", {"events": 1})
    run_id = result.complete.correlation_id
    # no rate limit: the load here is the point
    config = ServerConfig(bind_address="127.0.0.1", api_port=0, health_port=0, rate_limit_per_s=0)
    server = ApiServer(platform, config, TOKEN)
    if kind == "bare":
        bare = FastAPI()

        @bare.get("/runs/{run_id}")
        async def get_run(run_id: str) -> dict[str, Any]:
            info = await platform.harness.get_run(run_id)
            return {"id": info.id, "status": info.status, "session": info.session}

        server.app = bare
    endpoints = await server.start()
    assert server.app is not None and platform.stores.db is not None
    principals = SqlPrincipalStore(platform.stores.db)
    user = await principals.create_user("bench", role="admin", tenant=DEFAULT_TENANT)
    pat, _ = await Authenticator(principals).issue(user.id, "bench", scopes=["read"], ttl_s=3600)
    print(f"URL {endpoints.api} RUN {run_id} PAT {pat}", flush=True)
    await asyncio.Event().wait()


def _start_child(kind: str, home: Path) -> tuple[subprocess.Popen[str], str, str]:
    proc, url, run, _ = _start_child_with_pat(kind, home)
    return proc, url, run


def _start_child_with_pat(kind: str, home: Path) -> tuple[subprocess.Popen[str], str, str, str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--home", str(home)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.match(r"URL (\S+) RUN (\S+) PAT (\S+)", line)
    if not found:
        proc.kill()
        raise SystemExit(f"the {kind} server did not start: {line!r}")
    return proc, found.group(1), found.group(2), found.group(3)


# --- 1. GET /runs/{id} against the bare endpoint -------------------------------------------


async def _load(url: str, path: str, headers: dict[str, str], seconds: float, conc: int) -> float:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        done = 0
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                reply = await client.get(path)
                assert reply.status_code == 200, reply.text
                done += 1

        for _ in range(50):  # warm up
            await client.get(path)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return done / (time.perf_counter() - started)


async def bench_get(seconds: float, concurrency: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        api, api_url, api_run = _start_child("api", Path(tmp) / "api")
        bare, bare_url, bare_run = _start_child("bare", Path(tmp) / "bare")
        try:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            roost_rps, bare_rps = [], []
            for _ in range(rounds):  # interleaved, so background load hits both alike
                bare_rps.append(
                    await _load(bare_url, f"/runs/{bare_run}", {}, seconds, concurrency)
                )
                roost_rps.append(
                    await _load(api_url, f"/api/v1/runs/{api_run}", auth, seconds, concurrency)
                )
        finally:
            for proc in (api, bare):
                proc.kill()
                proc.wait()
    best_roost, best_bare = max(roost_rps), max(bare_rps)
    return {
        "roost_rps": round(best_roost),
        "bare_rps": round(best_bare),
        "ratio": round(best_bare / best_roost, 2),
        "target": 1.5,
    }


# --- 2. start -> first event, API against in-process ----------------------------------------


async def _p50_ms(client: httpx.AsyncClient, path: str, headers: dict[str, str], n: int) -> float:
    for _ in range(50):  # warm up (and fill the token cache)
        assert (await client.get(path, headers=headers)).status_code == 200
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def bench_auth(n: int, rounds: int) -> dict[str, Any]:
    """One request at a time, ``GET /api/v1/runs/{id}``: with a personal access token (the
    hash looked up, cached for ``token_cache_s``) against the static admin token (a
    constant-time compare: the least authentication can cost), on one server."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, run, pat = _start_child_with_pat("api", Path(tmp) / "api")
        try:
            path = f"/api/v1/runs/{run}"
            with_pat, with_static = [], []
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                for _ in range(rounds):
                    with_static.append(await _p50_ms(client, path, _bearer(TOKEN), n))
                    with_pat.append(await _p50_ms(client, path, _bearer(pat), n))
        finally:
            proc.kill()
            proc.wait()
    pat_ms, static_ms = min(with_pat), min(with_static)
    return {
        "pat_p50_ms": round(pat_ms, 3),
        "static_p50_ms": round(static_ms, 3),
        "ratio": round(pat_ms / static_ms, 3),
        "target": 1.1,
    }


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def bench_latency(n: int) -> dict[str, Any]:
    from api_helpers import api_server, deploy

    with tempfile.TemporaryDirectory() as tmp:
        async with api_server(Path(tmp) / "home") as api, api.client() as client:
            await deploy(client, Path(tmp), "bench", AGENT)
            platform = api.platform
            inproc: list[float] = []
            via_api: list[float] = []
            for i in range(n + 5):
                first = asyncio.get_running_loop().create_future()
                started = time.perf_counter()

                def on_event(event: Any, first: asyncio.Future[float] = first) -> None:
                    if not first.done():
                        first.set_result(time.perf_counter())

                task = asyncio.ensure_future(
                    platform.run("bench", {"events": 1}, on_event=on_event)
                )
                got = await first
                await task
                if i >= 5:
                    inproc.append((got - started) * 1000)

                started = time.perf_counter()
                run = (
                    await client.post(
                        "/api/v1/runs", json={"agent": "bench", "input": {"events": 1}}
                    )
                ).json()
                async with client.stream("GET", f"/api/v1/runs/{run['id']}/events") as stream:
                    async for line in stream.aiter_lines():
                        if line.startswith("data:"):
                            got = time.perf_counter()
                            break
                if i >= 5:
                    via_api.append((got - started) * 1000)
    p50_in, p50_api = statistics.median(inproc), statistics.median(via_api)
    return {
        "inprocess_p50_ms": round(p50_in, 2),
        "api_p50_ms": round(p50_api, 2),
        "overhead_p50_ms": round(p50_api - p50_in, 2),
        "api_p90_ms": round(sorted(via_api)[int(0.9 * len(via_api))], 2),
        "target_ms": 20,
    }


# --- 3. concurrent SSE streams ----------------------------------------------------------------


async def bench_streams(streams: int, events: int) -> dict[str, Any]:
    """All runs are started and all streams opened first; the runs then emit together, so
    what is measured is the fan-out of live events: each event's lag from its emission
    (the message's timestamp) to its arrival at the client."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, _ = _start_child("api", Path(tmp) / "home")
        try:
            limits = httpx.Limits(max_connections=streams + 10)
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=120, limits=limits,
            ) as many:  # fmt: skip
                at = time.time() + 3 + 0.03 * streams
                body = {"agent": "bench", "input": {"events": events, "pause": 0.2, "at": at}}
                late: list[str] = []

                async def follow() -> list[float]:
                    reply = await many.post("/api/v1/runs", json=body)
                    assert reply.status_code == 202, reply.text
                    run = reply.json()
                    lags: list[float] = []
                    async with many.stream("GET", f"/api/v1/runs/{run['id']}/events") as s:
                        if time.time() > at:  # its first events come from the replay
                            late.append(run["id"])
                        async for line in s.aiter_lines():
                            if line.startswith("data:"):
                                sent = json.loads(line[5:])["timestamp"]
                                lags.append(time.time() - sent)
                    return lags

                results = await asyncio.gather(*(follow() for _ in range(streams)))
                emitting = time.time() - at
        finally:
            proc.kill()
            proc.wait()
    expected = events + 1  # the events and the completion
    lags = sorted(lag * 1000 for each in results for lag in each)
    return {
        "streams": streams,
        "events_each": expected,
        "complete_streams": sum(1 for each in results if len(each) == expected),
        "events_received": len(lags),
        "attached_late": sum(1 for _ in late),
        "emitting_s": round(emitting, 2),
        "events_per_s": round(len(lags) / emitting),
        "lag_p50_ms": round(statistics.median(lags), 1),
        "lag_p99_ms": round(lags[int(0.99 * (len(lags) - 1))], 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=["api", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["get", "latency", "streams", "auth"])
    parser.add_argument("--seconds", type=float, default=3.0, help="load per round (get)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=50, help="runs measured (latency)")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.serve:
        await _serve(args.serve, args.home)
        return
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    results: dict[str, Any] = {}
    if args.only in (None, "get"):
        results["get"] = await bench_get(args.seconds, args.concurrency, args.rounds)
        r = results["get"]
        verdict = "PASS" if r["ratio"] <= r["target"] else "FAIL"
        print(f"GET /api/v1/runs/{{id}}: roost {r['roost_rps']} req/s, bare FastAPI "
              f"{r['bare_rps']} req/s: {r['ratio']}x (target <= 1.5x) {verdict}")  # fmt: skip
    if args.only in (None, "latency"):
        results["latency"] = await bench_latency(args.runs)
        r = results["latency"]
        verdict = "PASS" if r["overhead_p50_ms"] <= r["target_ms"] else "FAIL"
        print(f"start -> first event: in-process p50 {r['inprocess_p50_ms']} ms, API p50 "
              f"{r['api_p50_ms']} ms (p90 {r['api_p90_ms']}): overhead "
              f"{r['overhead_p50_ms']} ms (target <= 20 ms) {verdict}")  # fmt: skip
    if args.only in (None, "auth"):
        results["auth"] = await bench_auth(500, args.rounds)
        r = results["auth"]
        verdict = "PASS" if r["ratio"] <= r["target"] else "FAIL"
        print(f"authenticated request p50: access token {r['pat_p50_ms']} ms, static admin "
              f"token {r['static_p50_ms']} ms: {r['ratio']}x (target <= 1.1x) "
              f"{verdict}")  # fmt: skip
    if args.only in (None, "streams"):
        results["streams"] = await bench_streams(args.streams, args.events)
        r = results["streams"]
        verdict = "PASS" if r["complete_streams"] == r["streams"] else "FAIL"
        print(f"{r['streams']} concurrent SSE streams: {r['complete_streams']} complete, "
              f"{r['events_received']} events in {r['emitting_s']} s ({r['events_per_s']}/s); "
              f"emit -> client lag p50 {r['lag_p50_ms']} ms, p99 {r['lag_p99_ms']} ms; "
              f"{r['attached_late']} attached late {verdict}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
