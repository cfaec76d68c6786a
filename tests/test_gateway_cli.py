"""End to end as an operator and a user run it: ``roost server gateway`` and the daemon
(``python -m roost.toolsd``) as processes, NATS and the database real, and a worker-side
caller on the bus running a shell command on the daemon."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import ROOT, cli_env, wait_until
from roost.auth import Authenticator
from roost.bus._nats import NatsBus
from roost.devservers.nats import NatsServer
from roost.gateway import DaemonCaller, DaemonUnavailable
from roost.stores import SqlPrincipalStore, open_stores

pytestmark = pytest.mark.nats


async def _daemon_user(db_url: str, home: Path) -> tuple[str, str]:
    stores = await open_stores(db_url, home)
    try:
        assert stores.db is not None
        store = SqlPrincipalStore(stores.db)
        user = await store.create_user("erin")
        token, _record = await Authenticator(store).issue(
            user.id, "laptop", scopes=["daemon"], ttl_s=3600
        )
        return user.id, token
    finally:
        await stores.close()


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


async def test_a_worker_runs_a_shell_command_on_a_users_daemon_through_the_gateway(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    home = tmp_path / "server"
    db_url = f"sqlite:///{tmp_path / 'roost.db'}"
    user, token = await _daemon_user(db_url, home)
    env = cli_env(home)
    gateway_log = tmp_path / "gateway.log"
    gateway = _spawn(
        ["-m", "roost", "server", "gateway", "--gateway-port", "0", "--health-port", "0",
         "--bind-address", "127.0.0.1", "--db-url", db_url, "--nats-url", nats_server.url],
        env, gateway_log,
    )  # fmt: skip
    daemon = None
    bus = NatsBus(nats_server.url, client_name="worker")
    try:
        found = wait_until(
            lambda: re.search(r"daemons on 127\.0\.0\.1:(\d+)", gateway_log.read_text()),
            60,
            "the gateway to listen",
        )
        port = found.group(1)
        daemon_home = tmp_path / "laptop"
        (daemon_home / "work").mkdir(parents=True)
        daemon_env = env | {"ROOST_DAEMON_HOME": str(daemon_home), "ROOST_DAEMON_TOKEN": token}
        daemon = _spawn(
            ["-m", "roost.toolsd", "--gateway", f"http://127.0.0.1:{port}",
             "--root", str(daemon_home / "work"), "--foreground"],
            daemon_env, tmp_path / "daemon.out",
        )  # fmt: skip
        await bus.connect()
        caller = DaemonCaller(bus, online_ttl_s=0)
        for _ in range(100):
            if await caller.online(user) is not None:
                break
            assert daemon.poll() is None, (tmp_path / "daemon.out").read_text()
        reply = await caller.call(
            user, "tool.call", {"name": "shell", "arguments": {"command": "pwd; echo $((6*7))"}},
            timeout_s=20,
        )  # fmt: skip
        assert reply.ok, reply
        lines = reply.body["output"]["output"].split()
        assert lines == [str(daemon_home / "work"), "42"]
        assert (daemon_home / "daemon" / "roost-daemon.pid").read_text().strip() == str(daemon.pid)
        # another user has no daemon: a clear error naming the fix, within the timeout
        with pytest.raises(DaemonUnavailable, match="roost daemon start"):
            await caller.call("someone-else", "status", timeout_s=2)
        assert _stop(daemon) == 0
        assert not (daemon_home / "daemon" / "roost-daemon.pid").exists()
    finally:
        await bus.close()
        if daemon is not None:
            _stop(daemon)
        code = _stop(gateway)
    assert code == 0, gateway_log.read_text()
    assert os.path.getsize(gateway_log) > 0
