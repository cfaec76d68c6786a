"""Distributed mode end to end: real NATS, Postgres and Temporal from their wheels, two
``roostd`` nodes with different roles (a control node without inference workers, an
inference-only node without database access), and the ``roost`` CLI driving them as a user
would. The same agent gives the same output as in local mode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fakes import FakeLLMServer
from roost.config import GRPC_PORTS, WORKER_ROLES
from roost.devservers import NatsServer, PostgresServer, free_port

pytestmark = [pytest.mark.nats, pytest.mark.temporal, pytest.mark.postgres, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent

AGENT = """
async def run(ctx, input):
    reply = await ctx.infer("Say: " + input, max_tokens=20)
    seen = int(await ctx.kv.get_text("seen", "0")) + 1
    await ctx.kv.put("seen", str(seen))
    total = await ctx.tool("calculator", expression="6*7")
    return {"reply": reply.message.content, "seen": seen, "total": total}
"""


def make_agent(root: Path) -> Path:
    folder = root / "relay"
    folder.mkdir(parents=True)
    (folder / "agent.toml").write_text(
        'name = "relay"\nruntime = "python"\nentry = "agent:run"\n'
        'services = ["infer", "kv", "tool"]\n[models]\nchat = "remote-chat"\n'
        '[[tools]]\nname = "calculator"\n'
    )
    (folder / "agent.py").write_text(textwrap.dedent(AGENT))
    return folder


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "ROOST_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    for name in list(env):
        if name == "ROOST_CONFIG" or name.startswith("ROOST_CLIENT"):
            env.pop(name)
    return env | extra


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roost", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@dataclass
class Node:
    """One roostd node: its home, config and supervisor process."""

    name: str
    home: Path
    workers: dict[str, int]
    config: str
    proc: subprocess.Popen[str] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        counts = {role: 0 for role in WORKER_ROLES} | self.workers
        (self.home / "config.toml").write_text(
            self.config
            + "[distributed.workers]\n"
            + "".join(f"{role} = {count}\n" for role, count in counts.items())
        )
        self.env = base_env(self.home)
        log = (self.home / "roostd.out").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "roost.daemon", "start"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def status(self) -> dict[str, Any]:
        shown = run_cli(self.env, "status", "--json", timeout=30)
        return json.loads(shown.stdout) if shown.stdout.strip() else {}

    def wait_ready(self) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            assert self.proc is not None and self.proc.poll() is None, self.output()
            data = self.status()
            workers = data.get("workers", [])
            if (
                data.get("state") == "running"
                and workers
                and all(w["state"] == "ready" for w in workers)
            ):
                return data
            return None

        result: dict[str, Any] = wait_until(ready, 120, f"node {self.name} to be ready")
        return result

    def output(self) -> str:
        return (self.home / "roostd.out").read_text()

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture
def cluster(
    tmp_path: Path,
    nats_server: NatsServer,
    temporal_env: dict[str, str],
    postgres_server: PostgresServer,
) -> Iterator[tuple[Node, Node, dict[str, str]]]:
    database = postgres_server.create_database()
    ports = {role: free_port() for role in GRPC_PORTS}
    addresses = "".join(f'{role} = "127.0.0.1:{port}"\n' for role, port in ports.items())
    common = (
        f'[bus]\nbackend = "nats"\nurl = "{nats_server.url}"\n'
        f'[workflows]\ntemporal_address = "{temporal_env["ROOST_WORKFLOWS__TEMPORAL_ADDRESS"]}"\n'
        f'task_queue = "{temporal_env["ROOST_WORKFLOWS__TASK_QUEUE"]}"\n'
        "[distributed]\nheartbeat_s = 0.5\nworker_ttl_s = 3\nrestart_backoff_s = 0.2\n"
        "start_timeout_s = 90\nconnect_timeout_s = 5\n" + addresses
    )
    control = Node(
        "control",
        tmp_path / "control",
        {"registry": 1, "state": 1, "secret": 1, "catalog": 1, "harness": 1, "agent": 1}
        | {"kv": 1, "vec": 1},
        f'[state]\nbackend = "postgres"\nurl = "{database}"\n' + common + 'node = "control"\n',
    )
    # no [state] here: the inference node never opens the database
    inference = Node("inference", tmp_path / "gpu", {"inference": 2}, common + 'node = "gpu-1"\n')
    client = base_env(
        tmp_path / "client",
        **{f"ROOST_CLIENT__{role.upper()}": f"127.0.0.1:{port}" for role, port in ports.items()},
    )
    try:
        yield control, inference, client
    finally:
        for node in (inference, control):
            node.stop()
        postgres_server.drop_database(database.rsplit("/", 1)[1])


def test_an_agent_runs_across_two_nodes_as_it_does_locally(
    cluster: tuple[Node, Node, dict[str, str]], tmp_path: Path
) -> None:
    control, inference, client = cluster
    folder = make_agent(tmp_path / "src")
    with FakeLLMServer() as llm:
        control.start()
        control.wait_ready()
        model = ("model", "add", "remote-chat", "--engine", "openai", "--target", "fake-chat")
        added = run_cli(client, *model, "--base-url", llm.openai_url)
        assert added.returncode == 0, added.stderr

        # nothing serves infer yet: the deploy names what is missing
        refused = run_cli(client, "agent", "deploy", str(folder))
        assert refused.returncode == 1
        assert "no live worker serves infer" in refused.stderr, refused.stderr

        inference.start()
        status = inference.wait_ready()
        assert [(w["role"], w["index"]) for w in status["workers"]] == [
            ("inference", 0),
            ("inference", 1),
        ]
        deployed = run_cli(client, "agent", "deploy", str(folder))
        assert deployed.returncode == 0, deployed.stderr

        ran = run_cli(client, "agent", "run", "relay", "-p", "hello cluster")
        assert ran.returncode == 0, ran.stderr + control.output()
        distributed = json.loads(ran.stdout)
        assert distributed["reply"] == "echo: Say: hello cluster"
        assert distributed == {"reply": "echo: Say: hello cluster", "seen": 1, "total": 42}
        # the model call went to the inference node's workers, not the control node
        assert llm.count("/v1/chat/completions") == 1

        sessions = run_cli(client, "session", "list")
        assert "relay" in sessions.stdout, sessions.stderr

        # the same agent in local mode (one process, its own embedded services)
        local = base_env(tmp_path / "local", ROOST_WORKFLOWS__ENGINE="inprocess")
        assert run_cli(local, *model, "--base-url", llm.openai_url).returncode == 0
        assert run_cli(local, "agent", "deploy", str(folder)).returncode == 0
        alone = run_cli(local, "agent", "run", "relay", "-p", "hello cluster")
        assert alone.returncode == 0, alone.stderr
        assert json.loads(alone.stdout) == distributed

    assert inference.stop() == 0
    assert control.stop() == 0


def test_killing_an_inference_worker_mid_load_loses_no_run(
    cluster: tuple[Node, Node, dict[str, str]], tmp_path: Path
) -> None:
    """SIGKILL an inference worker while runs wait on it: its requests time out (a clear,
    retryable error), the durable runs retry them on the surviving worker, the supervisor
    restarts the dead one, and every run completes."""
    import asyncio

    from roost.config import ClientSettings
    from roost.platform import RemotePlatform

    control, inference, client = cluster
    # a short model-call timeout, so a request lost with its worker is retried quickly
    for node in (control, inference):
        node.config += "[inference]\ntimeout_s = 4\nconcurrency = 1\n"
    folder = make_agent(tmp_path / "src")
    with FakeLLMServer(delay_s=0.5) as llm:
        control.start()
        inference.start()
        control.wait_ready()
        before = inference.wait_ready()
        model = ("model", "add", "remote-chat", "--engine", "openai", "--target", "fake-chat")
        assert run_cli(client, *model, "--base-url", llm.openai_url).returncode == 0
        deployed = run_cli(client, "agent", "deploy", str(folder))
        assert deployed.returncode == 0, deployed.stderr
        victim = next(w for w in before["workers"] if w["index"] == 0)
        assert victim["restarts"] == 0  # its node waited for the registry, no crash loop

        addresses = {
            name[len("ROOST_CLIENT__") :].lower(): value
            for name, value in client.items()
            if name.startswith("ROOST_CLIENT__")
        }

        async def load() -> list[Any]:
            async with RemotePlatform(ClientSettings(**addresses, timeout_s=10)) as remote:
                runs = [
                    asyncio.create_task(remote.run("relay", f"run {i}", timeout_s=90))
                    for i in range(6)
                ]
                # kill worker 0 once requests are in flight on both workers
                await asyncio.to_thread(
                    wait_until,
                    lambda: llm.count("/v1/chat/completions") >= 2,
                    30,
                    "model calls to start",
                )
                os.kill(victim["pid"], signal.SIGKILL)
                return await asyncio.gather(*runs)

        results = asyncio.run(load())
        assert [r.ok for r in results] == [True] * 6, [r.complete.error for r in results]
        assert sorted(r.output["reply"] for r in results) == sorted(
            f"echo: Say: run {i}" for i in range(6)
        )

        def restarted() -> dict[str, Any] | None:
            status = inference.status()
            worker = next(w for w in status["workers"] if w["index"] == 0)
            ok = worker["restarts"] >= 1 and worker["state"] == "ready"
            return worker if ok and worker["pid"] != victim["pid"] else None

        assert wait_until(restarted, 30, "the killed worker to be restarted")["restarts"] == 1
    assert inference.stop() == 0
    assert control.stop() == 0
