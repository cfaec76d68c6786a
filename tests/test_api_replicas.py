"""Two API replicas and one run worker over real NATS, Postgres and Temporal: a run started
on one replica streams from the other, a cut stream resumes on the other replica with no
gap and no duplicate, and killing a replica mid-stream loses no run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_helpers import make_agent
from api_helpers import CHATTY, TOKEN
from cli_helpers import ROOT, cli_env
from roost.agents import pack_folder
from roost.devservers import NatsServer, PostgresServer, TemporalServer

pytestmark = [pytest.mark.e2e, pytest.mark.nats, pytest.mark.postgres, pytest.mark.temporal]

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    url: str  # the API's, or the health port's for the worker


def _start(name: str, args: list[str], env: dict[str, str], pattern: str) -> Proc:
    popen = subprocess.Popen(
        [sys.executable, "-m", "roost", "server", *args],
        env=env, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert popen.stderr is not None
    deadline = time.monotonic() + 120
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = popen.stderr.readline()
        if not line and popen.poll() is not None:
            break
        lines.append(line)
        found = re.search(pattern, line)
        if found:
            return Proc(name, popen, found.group(1))
    popen.kill()
    raise AssertionError(f"{name} did not start:\n" + "".join(lines))


@pytest.fixture
def cluster(
    tmp_path: Path,
    nats_server: NatsServer,
    postgres_server: PostgresServer,
    temporal_server: TemporalServer,
) -> Iterator[dict[str, Proc]]:
    database = postgres_server.create_database()
    host, port = temporal_server.address.rsplit(":", 1)
    shared = {
        "DATABASE_URL": database,
        "NATS_URL": nats_server.url,
        "TEMPORAL_HOST": host,
        "TEMPORAL_PORT": port,
        "ROOST_WORKFLOWS__TASK_QUEUE": f"test-{uuid.uuid4().hex[:12]}",
        "ROOST_SERVER__ADMIN_TOKEN": TOKEN,
        "HEALTH_PORT": "0",
    }
    procs: dict[str, Proc] = {}
    try:
        for name in ("worker", "a", "b"):
            env = cli_env(tmp_path / name) | shared
            if name == "worker":
                procs[name] = _start(name, ["worker"], env, r"health on (http://\S+)/health")
            else:
                args = ["api", "--api-port", "0", "--bind-address", "127.0.0.1"]
                procs[name] = _start(name, args, env, r"roost API on (http://\S+)")
        yield procs
    finally:
        for proc in procs.values():
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        postgres_server.drop_database(database.rsplit("/", 1)[1])


def _events(response: httpx.Response, stop_after: int | None = None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in current:
                events.append(current)
                if stop_after is not None and len(events) >= stop_after:
                    return events
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            current[field] = value.lstrip(" ")
    return events


def test_two_replicas_behave_as_one(cluster: dict[str, Proc], tmp_path: Path) -> None:
    a = httpx.Client(base_url=cluster["a"].url, headers=HEADERS, timeout=60)
    b = httpx.Client(base_url=cluster["b"].url, headers=HEADERS, timeout=60)
    ready = httpx.get(f"{cluster['worker'].url}/ready", timeout=10).json()
    assert ready["status"] == "ready", ready
    assert set(ready["checks"]) == {"database", "bus", "temporal"}

    folder = make_agent(tmp_path, "chatty", CHATTY, services=())
    deployed = a.post(
        "/api/v1/agents", content=pack_folder(folder), headers={"Content-Type": "application/gzip"}
    )
    assert deployed.status_code == 201, deployed.text
    assert b.get("/api/v1/agents/chatty").json()["version"] == 1  # one registry

    # started on A, streamed from B: every event up to the question
    run = a.post("/api/v1/runs", json={"agent": "chatty", "input": {"ask": "go?"}}).json()
    url = f"/api/v1/runs/{run['id']}/events"
    with b.stream("GET", url) as response:
        first = _events(response, stop_after=3)
    assert [e["event"] for e in first] == ["progress", "progress", "question"]

    # cut after the question; answered through B, resumed on A after the last id seen
    assert b.post(f"/api/v1/runs/{run['id']}/answer", json={"text": "yes"}).status_code == 200
    with a.stream("GET", url, headers={"Last-Event-ID": first[-1]["id"]}) as response:
        rest = _events(response)
    assert [e["event"] for e in rest] == ["answer", "complete"]
    assert json.loads(rest[-1]["data"])["output"] == {"reply": "you said yes"}
    seen = [e["id"] for e in first + rest]
    assert len(seen) == len(set(seen))
    with b.stream("GET", url) as response:
        whole = _events(response)
    assert [e["id"] for e in whole] == seen  # the durable copy, in the same order

    # a replica killed mid-stream loses no run: it is Temporal's and the worker's
    second = a.post("/api/v1/runs", json={"agent": "chatty", "input": {"ask": "still?"}}).json()
    with a.stream("GET", f"/api/v1/runs/{second['id']}/events") as response:
        assert [e["event"] for e in _events(response, stop_after=1)] == ["progress"]
        cluster["a"].popen.kill()
        cluster["a"].popen.wait()
    assert b.get(f"/api/v1/runs/{second['id']}").json()["status"] == "running"
    deadline = time.monotonic() + 30
    while not b.get(f"/api/v1/runs/{second['id']}").json()["question"]:
        assert time.monotonic() < deadline, "the run never asked its question"
        time.sleep(0.2)
    b.post(f"/api/v1/runs/{second['id']}/answer", json={"text": "on B"})
    done = b.get(f"/api/v1/runs/{second['id']}/wait").json()
    assert done["output"] == {"reply": "you said on B"}
    listed = [r["id"] for r in b.get("/api/v1/runs", params={"agent": "chatty"}).json()["items"]]
    assert {run["id"], second["id"]} <= set(listed)
