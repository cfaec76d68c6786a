"""``roost dev up``: a local dev cluster (NATS, Postgres, Temporal from their wheels and a
roostd node with every role), driven through the CLI as a user would: start it, use it
from "another terminal" through the client.toml it writes, stop it with Ctrl-C, and find
nothing left running."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import alive, cli_env, run_cli, wait_until

pytestmark = [pytest.mark.nats, pytest.mark.temporal, pytest.mark.postgres, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent

# COUNTER of test_platform, on agent-wide KV: consecutive runs (new sessions) count on
COUNTER = """
async def run(ctx, input):
    count = int(await ctx.kv.shared().get_text("count", "0")) + 1
    await ctx.kv.shared().put("count", str(count))
    return count
"""


def make_agent(root: Path) -> Path:
    folder = root / "counter"
    folder.mkdir(parents=True)
    (folder / "agent.toml").write_text(
        'name = "counter"\nruntime = "python"\nentry = "agent:run"\nservices = ["kv"]\n'
    )
    (folder / "agent.py").write_text(textwrap.dedent(COUNTER))
    return folder


@pytest.fixture
def home() -> Iterator[Path]:
    # Not tmp_path: as root, Postgres runs as another user, who must reach its data dir
    # through every parent directory (pytest makes them private).
    from roost.devcluster import stop_dev_cluster

    base = Path(tempfile.mkdtemp(prefix="roost-dev-test-"))
    base.chmod(0o711)
    try:
        yield base / "home"
    finally:
        # a failed test may leave a cluster (or a killed one's servers) running
        try:
            stop_dev_cluster(base / "home", timeout=60)
        finally:
            shutil.rmtree(base, ignore_errors=True)


class DevUp:
    """A `roost dev up` subprocess, its output in a file."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = home
        self.out = home.parent / "dev-up.out"
        with self.out.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "roost", "dev", "up", *args],
                env=cli_env(home),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals come from the test only
            )

    def output(self) -> str:
        return self.out.read_text()

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, (
                f"dev up exited {self.proc.returncode}:\n{self.output()}"
            )
            return "roost dev cluster ready" in self.output() and "Ctrl-C to stop" in self.output()

        wait_until(ready, timeout, "the dev cluster to be ready")

    def interrupt(self, timeout: float = 45) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"dev up did not stop within {timeout}s:\n{self.output()}"
            ) from None

    def ensure_stopped(self) -> None:
        """Stop it if it still runs (a failed test): SIGTERM, SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def refused_calls(address: str, pki: Path) -> list[str]:
    """How the dev cluster's secret service (mTLS, node credentials) answers clients that
    lack one piece each."""
    from roost.protocol import RoostError
    from roost.rpc import PLAINTEXT, RemoteSecretStore, RpcSecurity

    outcomes = []
    ca = (pki / "ca.pem").read_bytes()
    cert, key = (pki / "cli.pem").read_bytes(), (pki / "cli-key.pem").read_bytes()
    cases = [
        ("plaintext", PLAINTEXT),
        ("no client certificate", RpcSecurity(ca=ca)),
        ("no credential", RpcSecurity(ca=ca, cert=cert, key=key, mtls=True)),
    ]
    for label, security in cases:
        async with RemoteSecretStore(address, security=security, timeout_s=5) as secrets:
            try:
                await secrets.exists("x")
            except RoostError as exc:
                outcomes.append(f"{label}: {'auth' if exc.code == 'auth' else 'refused'}")
            else:
                outcomes.append(f"{label}: answered")
    return outcomes


async def ungranted_kv_get(nats_url: str, passwords: Path) -> str:
    """What the cluster's NATS says to an anonymous client, and its kv service to a valid
    bus client of another role (the harness's user) asking for agent counter's KV."""
    import nats

    from roost.bus import inbox_prefix
    from roost.protocol import KvGet, RequestMessage, ResponseMessage, decode, encode, to_body

    try:
        anonymous = await nats.connect(
            nats_url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5
        )
    except Exception as exc:
        refused = "Authorization Violation" in str(exc)
        outcome = "anonymous: refused" if refused else f"anonymous: {exc!r}"
    else:
        await anonymous.close()
        outcome = "anonymous: connected"
    request = RequestMessage(
        service="kv", op="get", body=to_body(KvGet(key="count", scope="agent")),
        agent="counter", timeout_s=5.0,
    )  # fmt: skip
    client = await nats.connect(
        nats_url, user="harness", password=(passwords / "harness.password").read_text(),
        inbox_prefix=inbox_prefix("harness"), connect_timeout=5,
    )  # fmt: skip
    try:
        reply = await client.request("roost.v1.svc.kv", encode(request), timeout=10)
    finally:
        await client.close()
    response = decode(reply.data, ResponseMessage)
    error = response.error
    answer = f"{error.code}: {error.message}" if error is not None else f"answered {response.body}"
    return f"{outcome}; {answer}"


def test_dev_up_runs_a_cluster_the_cli_uses_and_ctrl_c_stops_it_all(
    home: Path, tmp_path: Path
) -> None:
    env = cli_env(home)
    up = DevUp(home, "--workers", "inference=1", "--workers", "agent=1")
    try:
        up.wait_ready()
        output = up.output()
        for line in ("✓ NATS", "✓ Postgres", "✓ Temporal", "✓ roostd", "ROOST_CLIENT__HARNESS="):
            assert line in output, output

        status = run_cli(env, "dev", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "dev cluster running" in status.stdout
        cluster = json.loads((home / "dev" / "cluster.json").read_text())
        assert cluster["state"] == "running" and cluster["pid"] == up.proc.pid
        client = (home / "client.toml").read_text()
        assert f'harness = "{cluster["addresses"]["harness"]}"' in client, client

        # a second cluster on the same home is refused, in one line, and breaks nothing
        second = run_cli(env, "dev", "up")
        assert second.returncode == 1
        assert "a dev cluster already runs for" in second.stderr, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr

        # "another terminal": plain roost commands reach the cluster through client.toml
        deployed = run_cli(env, "agent", "deploy", str(make_agent(tmp_path)))
        assert deployed.returncode == 0, deployed.stderr
        runs = [run_cli(env, "agent", "run", "counter", "-p", "go") for _ in range(2)]
        assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
        assert [json.loads(r.stdout) for r in runs] == [1, 2]
        sessions = run_cli(env, "session", "list")
        assert sessions.stdout.count("counter") == 2, sessions.stdout + sessions.stderr
        # the runs went to the cluster: a local-mode home would have its own database
        assert not (home / "roost.db").exists()
        # secured by default: without the cluster's CA, or without a node credential, the
        # coordination services refuse (a bus address alone gets nobody in)
        assert "ca_file = " in client and "credential_file = " in client, client
        assert "cluster_key_file" not in client  # the CLI cannot mint node credentials
        refusals = asyncio.run(refused_calls(cluster["addresses"]["secret"], home / "dev" / "pki"))
        assert refusals == [
            "plaintext: refused",
            "no client certificate: refused",
            "no credential: auth",
        ], refusals
        # on the bus: no anonymous clients, and a valid client of another role writing a
        # request for the counter's KV by hand has no run grant for it
        refused = asyncio.run(
            ungranted_kv_get(cluster["addresses"]["nats"], home / "dev" / "pki" / "bus")
        )
        assert refused.startswith(
            "anonymous: refused; auth: kv.get: the request carries no run grant"
        ), refused

        node = cli_env(home / "dev" / "node")
        shown = run_cli(node, "status", "--json")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        workers = json.loads(shown.stdout)["workers"]
        expected = {role: count for role, count in cluster["workers"].items() if count}
        assert expected["inference"] == 1 and expected["agent"] == 1 and expected["kv"] == 1
        assert sorted((w["role"], w["index"]) for w in workers) == sorted(
            (role, i) for role, count in expected.items() for i in range(count)
        )
        assert all(w["state"] == "ready" for w in workers), workers

        cluster = json.loads((home / "dev" / "cluster.json").read_text())
        pids = {name: ref["pid"] for name, ref in cluster["processes"].items()}
        assert set(pids) == {"nats", "postgres", "temporal", "roostd"}
        pids |= {w["name"]: w["pid"] for w in workers}
        assert all(alive(pid) for pid in pids.values()), pids

        assert up.interrupt() == 0, up.output()
    finally:
        up.ensure_stopped()
    output = up.output()
    stops = ["stopped roostd", "stopped Temporal", "stopped Postgres", "stopped NATS"]
    assert [output.index(s) for s in stops] == sorted(output.index(s) for s in stops), output
    assert not (home / "client.toml").exists()
    left = {name: pid for name, pid in pids.items() if alive(pid)}
    assert not left, f"still running after dev up stopped: {left}"
    after = run_cli(env, "dev", "status")
    assert after.returncode == 1 and "no dev cluster runs" in after.stdout, after.stdout


def test_a_failed_start_says_what_failed_and_stops_what_it_started(home: Path) -> None:
    # Postgres cannot start: its data directory is a file
    (home / "dev").mkdir(parents=True)
    (home / "dev" / "postgres").write_text("not a directory")
    env = cli_env(home)
    started = time.monotonic()
    result = run_cli(env, "dev", "up")
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: starting Postgres failed:"), errors
    assert str(home / "dev" / "postgres") in errors[0]
    assert "✓ NATS" in result.stdout and "stopped NATS" in result.stdout, result.stdout
    assert time.monotonic() - started < 30
    cluster = json.loads((home / "dev" / "cluster.json").read_text())
    assert cluster["state"] == "stopped" and cluster["processes"] == {}
    assert not (home / "client.toml").exists()
    # the NATS it started is gone: its port is free again
    nats_port = int(cluster["addresses"]["nats"].rsplit(":", 1)[1])
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", nats_port))


def test_a_restart_keeps_the_data_and_ports_and_cleans_up_after_a_killed_dev_up(
    home: Path, tmp_path: Path
) -> None:
    env = cli_env(home)
    home.mkdir(parents=True)
    mine = 'harness = "elsewhere.example:9091"\n'
    (home / "client.toml").write_text(mine)
    first = DevUp(home, "--workers", "inference=0", "--workers", "agent=1", "-w", "embedding=0")
    try:
        first.wait_ready()
        output = first.output()
        # the user's own client file stays; the printed variables select the cluster
        assert "was not written by `roost dev up`" in output, output
        assert (home / "client.toml").read_text() == mine
        export = next(line for line in output.splitlines() if "export ROOST_CLIENT__" in line)
        selected = env | dict(v.split("=", 1) for v in export.split()[1:])
        assert run_cli(selected, "agent", "deploy", str(make_agent(tmp_path))).returncode == 0
        ran = run_cli(selected, "agent", "run", "counter", "-p", "go")
        assert ran.returncode == 0 and json.loads(ran.stdout) == 1, ran.stderr
        before = json.loads((home / "dev" / "cluster.json").read_text())

        # a crash of `dev up` itself: roostd follows it (parent-death signal), the servers
        # stay, and both `dev status` and the next `dev up` know
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        roostd = before["processes"]["roostd"]["pid"]
        wait_until(lambda: not alive(roostd), 30, "roostd to stop after dev up died")
        status = run_cli(env, "dev", "status")
        assert status.returncode == 1, status.stdout
        assert "is gone without stopping; still running: Temporal" in status.stdout, status.stdout
    finally:
        first.ensure_stopped()

    second = DevUp(home, "--workers", "inference=0", "--workers", "agent=1", "-w", "embedding=0")
    try:
        second.wait_ready()
        assert "stopped what the last dev cluster left running" in second.output()
        after = json.loads((home / "dev" / "cluster.json").read_text())
        # stable addresses: the ports of the last cluster were free again, so reused
        assert after["addresses"] == before["addresses"]
        # the agent and its KV were kept (in Postgres under $ROOST_HOME/dev)
        ran = run_cli(selected, "agent", "run", "counter", "-p", "go")
        assert ran.returncode == 0 and json.loads(ran.stdout) == 2, ran.stderr

        down = run_cli(env, "dev", "down")
        assert down.returncode == 0 and "stopped the dev cluster" in down.stdout, down.stderr
        assert second.proc.wait(5) == 0, second.output()
    finally:
        second.ensure_stopped()
    pids = [ref["pid"] for ref in after["processes"].values()]
    pids += [ref["pid"] for ref in before["processes"].values()]
    assert not [pid for pid in pids if alive(pid)]
    assert (home / "client.toml").read_text() == mine


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_postgres_as_root_names_the_private_directory_above_its_data(tmp_path: Path) -> None:
    from roost.devservers import DevServerError, PostgresServer

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    server = PostgresServer(data_dir=private / "pg", log_dir=tmp_path / "logs")
    with pytest.raises(DevServerError, match=r"cannot reach the data directory") as caught:
        server.start()
    # the first private directory on the way (pytest's own may come before ours)
    message = str(caught.value)
    blocker = message.split("`chmod o+x ", 1)[1].split("`", 1)[0]
    assert (private / "pg").is_relative_to(blocker) and "(mode 700)" in message, message
    assert not server.is_running


def test_ensure_database_creates_once(postgres_server: Any) -> None:
    import uuid

    name = f"dev_{uuid.uuid4().hex[:12]}"
    try:
        url = postgres_server.ensure_database(name)
        assert postgres_server.ensure_database(name) == url == postgres_server.database_url(name)
    finally:
        postgres_server.drop_database(name)
