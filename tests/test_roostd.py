"""``roostd serve`` serves the platform services on NATS in one process; a roost client in
another process uses them. (The supervised workers of ``roostd start``: test_supervisor.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent

COUNTER = """
async def run(ctx, input):
    count = int(await ctx.kv.get_text("count", "0")) + 1
    await ctx.kv.put("count", str(count))
    return {"count": count}
"""


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roost", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def nats_env(tmp_path: Path, nats_server, temporal_env) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "ROOST_HOME": str(tmp_path / "home"), "NO_COLOR": "1", "COLUMNS": "200"}
    env.update(temporal_env)
    env.update(ROOST_BUS__BACKEND="nats", ROOST_BUS__URL=nats_server.url)
    env.pop("ROOST_CONFIG", None)
    return env


@pytest.fixture
def roostd(nats_env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from roost.daemon.main import main; main()",
            "serve",
            "--services",
            "kv,tool",
        ],
        env=nats_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "serving kv, tool" in line, line
    yield proc
    proc.terminate()
    proc.wait(10)


def test_client_uses_services_served_by_roostd(
    roostd: subprocess.Popen[str], nats_env: dict[str, str], tmp_path: Path
) -> None:
    agent = tmp_path / "counter"
    agent.mkdir()
    (agent / "agent.toml").write_text(
        'name = "counter"\nruntime = "python"\nentry = "agent:run"\nservices = ["kv"]\n'
    )
    (agent / "agent.py").write_text(textwrap.dedent(COUNTER))
    deployed = cli(nats_env, "agent", "deploy", str(agent))
    assert deployed.returncode == 0, deployed.stderr
    first = cli(nats_env, "agent", "run", "counter", "-p", "x")
    assert first.returncode == 0, first.stderr
    session = first.stderr.split("session ")[1].split()[0]
    second = cli(nats_env, "agent", "run", "counter", "-s", session, "-p", "x")
    assert json.loads(second.stdout)["count"] == 2


def test_deploy_fails_clearly_when_a_service_is_not_served(
    roostd: subprocess.Popen[str], nats_env: dict[str, str], tmp_path: Path
) -> None:
    agent = tmp_path / "vec-user"
    agent.mkdir()
    (agent / "agent.toml").write_text(
        'name = "vec-user"\nruntime = "python"\nentry = "agent:run"\nservices = ["vec"]\n'
    )
    (agent / "agent.py").write_text("async def run(ctx, input):\n    return 1\n")
    proc = cli(nats_env, "agent", "deploy", str(agent))
    assert proc.returncode == 1
    assert (
        "field 'services'" in proc.stderr
        and "vec" in proc.stderr
        and "roost.v1.svc.vec" in proc.stderr
    )


def test_roostd_refuses_memory_bus_and_unknown_services(nats_env: dict[str, str]) -> None:
    env = {**nats_env, "ROOST_BUS__BACKEND": "memory"}
    proc = subprocess.run(
        [sys.executable, "-c", "from roost.daemon.main import main; main()", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "needs bus.backend" in proc.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from roost.daemon.main import main; main()",
            "serve",
            "--services",
            "kv,teleport",
        ],
        env=nats_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown service(s) teleport" in proc.stderr


def test_unreachable_nats_is_a_clear_error_not_a_hang(nats_env: dict[str, str]) -> None:
    env = {**nats_env, "ROOST_BUS__URL": "nats://127.0.0.1:1"}
    started = time.monotonic()
    proc = cli(env, "agent", "list")
    assert time.monotonic() - started < 30
    assert proc.returncode == 1 and "cannot reach NATS at nats://127.0.0.1:1" in proc.stderr
