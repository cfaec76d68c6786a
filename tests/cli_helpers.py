"""Driving the ``roost`` CLI from tests as a user would: a clean environment for a home, a
subprocess per command, and polling for what a command eventually shows."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roost._proc import pid_alive

ROOT = Path(__file__).resolve().parent.parent


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a CLI on ``home``: no config file or deployment of
    the caller's leaks in (``extra`` is added last)."""
    env = {**os.environ, "ROOST_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    for name in list(env):
        if name in ("ROOST_CONFIG", "ROOST_CLIENT_CONFIG") or name.startswith("ROOST_CLIENT__"):
            env.pop(name)
    return env | extra


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120, module: str = "roost"
) -> subprocess.CompletedProcess[str]:
    """``roost ARGS`` in a subprocess, its output captured (``module="roost.daemon"``:
    ``roostd ARGS``)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def await_until(
    check: Callable[[], Any], timeout: float, what: str, *, every: float = 0.05
) -> Any:
    """:func:`wait_until` in a test's event loop (which keeps running while it polls)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def wait_until(check: Callable[[], Any], timeout: float, what: str, *, every: float = 0.2) -> Any:
    """``check()``'s first truthy result, polled every ``every`` s for up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet counts as dead)."""
    return pid_alive(pid)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The error a failed command printed: exit 1, one line on stderr, no traceback."""
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]
