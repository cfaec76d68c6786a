"""End to end as an operator and a user run it: ``roost server gateway`` and the daemon
(``python -m roost.toolsd``) as processes, NATS and the database real, and a worker-side
caller on the bus running a shell command on the daemon."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from api_helpers import api_server, make_user
from cli_helpers import ROOT, cli_env, ok, wait_until
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


def _spawn_gateway(
    db_url: str, nats_url: str, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """``roost server gateway`` on free loopback ports."""
    return _spawn(
        ["-m", "roost", "server", "gateway", "--gateway-port", "0", "--health-port", "0",
         "--bind-address", "127.0.0.1", "--db-url", db_url, "--nats-url", nats_url],
        env, log,
    )  # fmt: skip


def _gateway_url(log: Path) -> str:
    """The daemons' URL the gateway announced in ``log``."""
    found = wait_until(
        lambda: re.search(r"daemons on 127\.0\.0\.1:(\d+)", log.read_text()),
        60,
        "the gateway to listen",
    )
    return f"http://127.0.0.1:{found.group(1)}"


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
    gateway = _spawn_gateway(db_url, nats_server.url, env, gateway_log)
    daemon = None
    bus = NatsBus(nats_server.url, client_name="worker")
    try:
        url = _gateway_url(gateway_log)
        daemon_home = tmp_path / "laptop"
        (daemon_home / "work").mkdir(parents=True)
        daemon_env = env | {"ROOST_DAEMON_HOME": str(daemon_home), "ROOST_DAEMON_TOKEN": token}
        daemon = _spawn(
            ["-m", "roost.toolsd", "--gateway", url,
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


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # in a thread: the API server in this loop keeps serving
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "roost", *args], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip


async def test_roost_daemon_register_start_status_logs_stop(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with api_server(tmp_path / "server") as api:
        user, token = await make_user(api, "frank")
        db_url = api.platform.settings.database_url
        env = cli_env(
            tmp_path / "client",
            ROOST_CLIENT_CONFIG=str(tmp_path / "client.toml"),
            ROOST_DAEMON_HOME=str(tmp_path / "laptop"),
        )
        gateway_log = tmp_path / "gateway.log"
        gateway = _spawn_gateway(db_url, nats_server.url, env, gateway_log)
        bus = NatsBus(nats_server.url, client_name="worker")
        try:
            url = _gateway_url(gateway_log)
            # not registered and not logged in: told what to do
            refused = await _cli(env, "daemon", "start")
            assert refused.returncode == 1 and "roost daemon register" in refused.stderr
            ok(await _cli(env, "auth", "login", "--url", api.url, "--token", token))
            registered = await _cli(env, "daemon", "register", "--gateway", url)
            assert f"for user {user['id']}" in ok_err(registered)
            credentials = tmp_path / "laptop" / "auth" / "roost-daemon.json"
            assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
            assert json.loads(credentials.read_text())["user_id"] == user["id"]
            work = tmp_path / "work"
            work.mkdir()
            started = await _cli(env, "daemon", "start", "--root", str(work))
            assert "connected to" in ok_err(started), started.stderr
            again = await _cli(env, "daemon", "start")
            assert again.returncode == 1 and "already runs" in again.stderr
            assert "connected to" in ok_err(await _cli(env, "daemon", "status"))
            await bus.connect()
            reply = await DaemonCaller(bus).call(
                user["id"], "tool.call", {"name": "shell", "arguments": {"command": "pwd"}},
                timeout_s=20,
            )  # fmt: skip
            assert reply.ok and reply.body["output"]["output"].strip() == str(work)
            # the user tightens the policy; `reload` applies it without a reconnect
            policy = tmp_path / "laptop" / "policy.toml"
            policy.write_text(f'roots = ["{work}"]\ndeny_tools = ["shell"]\n')
            assert "reload" in ok_err(await _cli(env, "daemon", "reload"))
            for _ in range(50):
                reply = await DaemonCaller(bus).call(
                    user["id"], "tool.call", {"name": "shell", "arguments": {"command": "pwd"}},
                    timeout_s=20,
                )  # fmt: skip
                if reply.body.get("denied"):
                    break
                await asyncio.sleep(0.2)
            assert "refused by the daemon's policy" in reply.body["output"], reply
            assert "connected to gateway" in ok(await _cli(env, "daemon", "logs"))
            assert "configuration reloaded" in ok(await _cli(env, "daemon", "logs"))
            assert "stopped" in ok_err(await _cli(env, "daemon", "stop"))
            status = await _cli(env, "daemon", "status")
            assert status.returncode == 3 and "not running" in status.stderr
        finally:
            await _cli(env, "daemon", "stop", "--force")
            await bus.close()
            assert _stop(gateway) == 0, gateway_log.read_text()


def ok_err(proc: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a command that succeeded (roost's messages go there)."""
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    return proc.stderr
