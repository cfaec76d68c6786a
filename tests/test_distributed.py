"""Distributed mode end to end: real NATS, Postgres and Temporal from their wheels, two
``roostd`` nodes with different roles (a control node without inference workers, an
inference-only node without database access), and the ``roost`` CLI driving them as a user
would. The same agent gives the same output as in local mode."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import make_agent as make_relay
from cli_helpers import cli_env, run_cli, wait_until
from fakes import FakeLLMServer
from roost.auth import write_grant_keys
from roost.bus import BUS_USERS, nats_authorization
from roost.config import GRPC_PORTS, WORKER_ROLES, RpcSecurityConfig
from roost.devservers import NatsServer, PostgresServer, free_port
from roost.rpc import write_cluster_credentials

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
    """The relay agent (chat, KV and the calculator tool) under ``root``."""
    models = '[models]\nchat = "remote-chat"\n[[tools]]\nname = "calculator"\n'
    return make_relay(root, "relay", AGENT, models, ("infer", "kv", "tool"))


@dataclass
class Node:
    """One roostd node: its home, config and supervisor process."""

    name: str
    home: Path
    workers: dict[str, Any]
    config: str
    proc: subprocess.Popen[str] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        counts = {role: 0 for role in WORKER_ROLES} | self.workers
        plain = {r: n for r, n in counts.items() if isinstance(n, int)}
        tables = {r: n for r, n in counts.items() if isinstance(n, dict)}
        (self.home / "config.toml").write_text(
            self.config
            + "[distributed.workers]\n"
            + "".join(f"{role} = {count}\n" for role, count in plain.items())
            + "".join(
                f"[distributed.workers.{role}]\n"
                + "".join(f"{engine} = {n}\n" for engine, n in per_engine.items())
                for role, per_engine in tables.items()
            )
        )
        self.env = cli_env(self.home)
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


def _toml(values: dict[str, Any]) -> str:
    # a JSON string or boolean is a TOML one
    return "".join(
        f"{k} = {json.dumps(v if isinstance(v, bool) else str(v))}\n" for k, v in values.items()
    )


@dataclass
class Security:
    """A deployment's trust, as an operator makes it: gRPC CA, certificates and node
    credentials, the run-grant key pair, and a NATS user per role."""

    pki: Path
    grpc: dict[str, RpcSecurityConfig]
    grant_key: Path
    grant_public_key: Path
    passwords: dict[str, str]

    @classmethod
    def make(cls, pki: Path) -> Security:
        grpc = write_cluster_credentials(pki, ["control", "gpu-1", "cli"])
        private, public = write_grant_keys(pki)
        bus = pki / "bus"
        bus.mkdir()
        passwords = {user: secrets.token_urlsafe(16) for user in BUS_USERS}
        for user, password in passwords.items():
            (bus / f"{user}.password").write_text(password)
        return cls(pki, grpc, private, public, passwords)

    def nats_config(self) -> Path:
        conf = self.pki / "nats-auth.conf"
        conf.write_text(nats_authorization(self.passwords))
        return conf

    def node_config(self, node: str) -> tuple[str, str]:
        """A node's ``[bus]`` credentials and its ``[distributed.security]`` table body."""
        bus = self.pki / "bus"
        keys = {
            "user": "roostd",
            "password_file": bus / "roostd.password",
            "credentials_dir": bus,
            "grant_key_file": self.grant_key,
            "grant_public_key_file": self.grant_public_key,
        }
        return _toml(keys), _toml(self.grpc[node].model_dump(exclude_defaults=True))

    def client_env(self) -> dict[str, str]:
        cli = self.grpc["cli"].model_dump(exclude_defaults=True)
        cli.pop("cluster_key_file")
        return {
            f"ROOST_CLIENT__SECURITY__{key.upper()}": "true" if v is True else str(v)
            for key, v in cli.items()
        }


@contextlib.contextmanager
def make_cluster(
    tmp_path: Path,
    nats_url: str,
    temporal_env: dict[str, str],
    postgres: PostgresServer,
    security: Security | None = None,
) -> Iterator[tuple[Node, Node, dict[str, str]]]:
    """A control node (every role but inference, on Postgres) and an inference-only node
    (no database), not started; and the CLI environment that talks to them. With
    ``security``, every surface is secured: gRPC mTLS and node credentials, NATS users,
    run grants."""
    database = postgres.create_database()
    ports = {role: free_port() for role in GRPC_PORTS}
    addresses = "".join(f'{role} = "127.0.0.1:{port}"\n' for role, port in ports.items())

    def common(node: str) -> str:
        bus, table = security.node_config(node) if security else ("", "")
        return (
            f'[bus]\nbackend = "nats"\nurl = "{nats_url}"\n{bus}'
            f'[workflows]\ntemporal_address = "{temporal_env["ROOST_WORKFLOWS__TEMPORAL_ADDRESS"]}"\n'
            f'task_queue = "{temporal_env["ROOST_WORKFLOWS__TASK_QUEUE"]}"\n'
            + (f"[distributed.security]\n{table}" if table else "")
            + "[distributed]\nheartbeat_s = 0.5\nworker_ttl_s = 3\nrestart_backoff_s = 0.2\n"
            "start_timeout_s = 90\nconnect_timeout_s = 5\n" + addresses + f'node = "{node}"\n'
        )

    control = Node(
        "control",
        tmp_path / "control",
        {"registry": 1, "state": 1, "secret": 1, "catalog": 1, "harness": 1, "agent": 1}
        | {"kv": 1, "vec": 1},
        f'[state]\nbackend = "postgres"\nurl = "{database}"\n' + common("control"),
    )
    # no [state] here: the inference node never opens the database
    # two workers of the OpenAI-compatible engine only
    inference = Node("inference", tmp_path / "gpu", {"inference": {"openai": 2}}, common("gpu-1"))
    client = cli_env(
        tmp_path / "client",
        **{f"ROOST_CLIENT__{role.upper()}": f"127.0.0.1:{port}" for role, port in ports.items()},
        **(security.client_env() if security else {}),
    )
    try:
        yield control, inference, client
    finally:
        for node in (inference, control):
            node.stop()
        postgres.drop_database(database.rsplit("/", 1)[1])


@pytest.fixture
def cluster(
    tmp_path: Path,
    nats_server: NatsServer,
    temporal_env: dict[str, str],
    postgres_server: PostgresServer,
) -> Iterator[tuple[Node, Node, dict[str, str]]]:
    with make_cluster(tmp_path, nats_server.url, temporal_env, postgres_server) as nodes:
        yield nodes


@pytest.fixture
def secured_cluster(
    tmp_path: Path, temporal_env: dict[str, str], postgres_server: PostgresServer
) -> Iterator[tuple[Node, Node, dict[str, str]]]:
    """The same two nodes with everything secured, on a NATS of their own that has users."""
    security = Security.make(tmp_path / "pki")
    with (
        NatsServer(extra_args=["-c", str(security.nats_config())]) as nats,
        make_cluster(tmp_path, nats.url, temporal_env, postgres_server, security) as nodes,
    ):
        yield nodes


def test_an_agent_runs_across_two_nodes_as_it_does_locally(
    secured_cluster: tuple[Node, Node, dict[str, str]], tmp_path: Path
) -> None:
    """With auth on everywhere (gRPC mTLS and node credentials, a NATS user per role, run
    grants): the deployment works exactly as it does open."""
    control, inference, client = secured_cluster
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
        # the registry's view of the whole deployment: both nodes, every worker live
        shown = run_cli(client, "status", "--cluster", "--json")
        assert shown.returncode == 0, shown.stderr
        registered = {(w["node"], w["role"]): w for w in json.loads(shown.stdout)["workers"]}
        assert registered[("gpu-1", "inference")]["capabilities"]["services"] == ["infer"]
        assert registered[("gpu-1", "inference")]["capabilities"]["engines"] == ["openai"]
        # an agent on the embedded llama.cpp model: no live worker runs that engine
        other = make_agent(tmp_path / "other")
        manifest = other / "agent.toml"
        manifest.write_text(manifest.read_text().replace("remote-chat", "smollm2"))
        refused = run_cli(client, "agent", "deploy", str(other))
        assert refused.returncode == 1
        assert "engine 'llama-cpp', which no live infer worker serves" in refused.stderr
        assert {role for node, role in registered if node == "control"} == {
            "registry",
            "state",
            "secret",
            "catalog",
            "harness",
            "agent",
            "kv",
            "vec",
        }
        assert all(w["live"] for w in registered.values())

        ran = run_cli(client, "agent", "run", "relay", "-p", "hello cluster")
        assert ran.returncode == 0, ran.stderr + control.output()
        distributed = json.loads(ran.stdout)
        assert distributed["reply"] == "echo: Say: hello cluster"
        assert distributed == {"reply": "echo: Say: hello cluster", "seen": 1, "total": 42}
        # the model call went to the inference node's workers, not the control node
        assert llm.count("/v1/chat/completions") == 1

        sessions = run_cli(client, "session", "list")
        assert "relay" in sessions.stdout, sessions.stderr
        # and it was secured: without the CLI's credentials the same command is refused
        plain = {k: v for k, v in client.items() if "__SECURITY__" not in k}
        refused = run_cli(plain, "session", "list")
        assert refused.returncode == 1 and "state at 127.0.0.1" in refused.stderr, refused

        # the same agent in local mode (one process, its own embedded services)
        local = cli_env(tmp_path / "local", ROOST_WORKFLOWS__ENGINE="inprocess")
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


STEPPER = """
import asyncio

async def run(ctx, input):
    done = []
    for i in range(6):
        await ctx.emit(f"step {i}", i=i)
        await ctx.kv.put(f"step-{i}", "done")
        await ctx.step(asyncio.sleep, 0.4)
        done.append(i)
    return {"steps": done}
"""


def test_events_projection_and_a_nats_restart_mid_run(
    tmp_path: Path, temporal_env: dict[str, str], postgres_server: PostgresServer
) -> None:
    """With record_events = "projection", runs publish events to JetStream and a projection
    worker writes them into the DAG. NATS restarts in the middle of a run: the workers
    reconnect, the run completes, and every event reaches the DAG exactly once."""
    import asyncio

    from roost.config import ClientSettings
    from roost.platform import RemotePlatform

    store = tmp_path / "jetstream"
    with (
        NatsServer(store_dir=store) as nats,
        make_cluster(tmp_path, nats.url, temporal_env, postgres_server) as (control, _, client),
    ):
        control.workers["projection"] = 1
        control.config += '[runtime]\nrecord_events = "projection"\nrequest_timeout_s = 5\n'
        control.start()
        status = control.wait_ready()
        assert "projection" in {w["role"] for w in status["workers"]}
        folder = tmp_path / "src" / "stepper"
        folder.mkdir(parents=True)
        (folder / "agent.toml").write_text(
            'name = "stepper"\nruntime = "python"\nentry = "agent:run"\nservices = ["kv"]\n'
        )
        (folder / "agent.py").write_text(textwrap.dedent(STEPPER))
        deployed = run_cli(client, "agent", "deploy", str(folder))
        assert deployed.returncode == 0, deployed.stderr
        addresses = {
            name[len("ROOST_CLIENT__") :].lower(): value
            for name, value in client.items()
            if name.startswith("ROOST_CLIENT__")
        }

        async def run_through_restart() -> Any:
            async with RemotePlatform(ClientSettings(**addresses, timeout_s=10)) as remote:
                seen: list[int] = []
                run = asyncio.create_task(
                    remote.run("stepper", None, timeout_s=120, on_event=lambda e: seen.append(1))
                )
                await asyncio.sleep(1.0)  # a couple of steps in
                await asyncio.to_thread(nats.restart)
                result = await run
                return result, await remote.session_nodes(result.session.id)

        result, nodes = asyncio.run(run_through_restart())
        assert result.ok, result.complete.error
        assert result.output == {"steps": [0, 1, 2, 3, 4, 5]}

        def all_events() -> list[Any] | None:
            nodes = asyncio.run(_nodes(addresses, result.session.id))
            found = [n for n in nodes if n.kind == "event" and n.content["type"] == "progress"]
            return found if len(found) >= 6 else None

        events = wait_until(all_events, 30, "the projection to record every event")
        assert sorted(e.content["data"]["i"] for e in events) == [0, 1, 2, 3, 4, 5]  # once each
        puts = [n for n in nodes if n.kind == "request" and n.content.get("op") == "put"]
        # each put recorded once, even one retried across the restart (same message id)
        assert sorted(n.content["body"]["key"] for n in puts) == [f"step-{i}" for i in range(6)]
    assert control.stop() == 0


async def _nodes(addresses: dict[str, str], session: str) -> list[Any]:
    from roost.config import ClientSettings
    from roost.platform import RemotePlatform

    async with RemotePlatform(ClientSettings(**addresses, timeout_s=10)) as remote:
        return await remote.session_nodes(session)
