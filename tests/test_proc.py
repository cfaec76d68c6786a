"""roost._proc, the process toolkit, on real processes, ports and files."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost._proc import (
    free_port,
    guarded_argv,
    pid_alive,
    port_accepts,
    port_free,
    signal_group,
    start_ticks,
    still_running,
    stop_popen,
    terminate,
    write_atomic,
    write_json_atomic,
)

linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")

# ignores SIGTERM; says so once the handler is in place
STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def stubborn() -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# --- liveness -------------------------------------------------------------------------------


def test_a_running_process_is_alive_and_an_exited_one_is_not(
    sleeper: subprocess.Popen[bytes],
) -> None:
    assert pid_alive(sleeper.pid)
    assert pid_alive(os.getpid())
    sleeper.kill()
    sleeper.wait()
    assert not pid_alive(sleeper.pid)


@linux_only
def test_a_zombie_is_dead_and_reap_collects_it(sleeper: subprocess.Popen[bytes]) -> None:
    sleeper.kill()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{sleeper.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not pid_alive(sleeper.pid)  # exited, not reaped
    assert os.path.exists(f"/proc/{sleeper.pid}")
    assert not pid_alive(sleeper.pid, reap=True)
    assert not os.path.exists(f"/proc/{sleeper.pid}")  # reaped
    sleeper.returncode = -signal.SIGKILL  # the fixture must not wait for it again


@linux_only
def test_start_ticks_tell_a_process_from_a_reused_pid(sleeper: subprocess.Popen[bytes]) -> None:
    start = start_ticks(sleeper.pid)
    assert isinstance(start, int) and start > 0
    assert start_ticks(sleeper.pid) == start
    assert still_running(sleeper.pid, start)
    assert still_running(sleeper.pid, None)
    assert not still_running(sleeper.pid, start + 1)  # what a later process on the pid shows
    assert not still_running(0, None)
    sleeper.kill()
    sleeper.wait()
    assert start_ticks(sleeper.pid) is None
    assert not still_running(sleeper.pid, start)


# --- stopping -------------------------------------------------------------------------------


def test_terminate_stops_a_process_with_its_signal(sleeper: subprocess.Popen[bytes]) -> None:
    began = time.monotonic()
    assert terminate(sleeper.pid, grace=5.0)
    assert time.monotonic() - began < 4.0  # it did not need the SIGKILL
    assert not pid_alive(sleeper.pid)
    sleeper.returncode = -signal.SIGTERM  # terminate reaped it


def test_terminate_kills_a_process_that_ignores_sigterm() -> None:
    proc = stubborn()
    try:
        assert terminate(proc.pid, grace=0.3)
        assert not pid_alive(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def test_stop_popen_kills_a_child_that_ignores_sigterm() -> None:
    proc = stubborn()
    assert stop_popen(proc, grace=0.3) == -signal.SIGKILL
    assert stop_popen(proc, grace=0.3) == -signal.SIGKILL  # stopping again: the same code


def test_stop_popen_with_grace_ends_with_sigterm(sleeper: subprocess.Popen[bytes]) -> None:
    assert stop_popen(sleeper, grace=5.0) == -signal.SIGTERM


def test_signal_group_reaches_the_group_and_says_when_it_is_gone(
    sleeper: subprocess.Popen[bytes],
) -> None:
    assert signal_group(sleeper.pid, 0)
    assert signal_group(sleeper.pid, signal.SIGKILL)
    sleeper.wait(10)
    assert not signal_group(sleeper.pid, 0)


# --- the parent-death guard -----------------------------------------------------------------

# Starts a guarded `sleep` (whose pid it prints) and waits to be killed.
PARENT = """
import subprocess, sys, time
from roost._proc import guarded_argv
child = subprocess.Popen(guarded_argv(["/bin/sleep", "60"]), start_new_session=True)
print(child.pid, flush=True)
time.sleep(60)
"""


@linux_only
def test_the_guard_ends_the_grandchild_when_its_parent_is_sigkilled() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 10
        while b"sleep" not in Path(f"/proc/{grandchild}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the guard did not exec the command"
            time.sleep(0.02)
        assert pid_alive(grandchild)
        parent.kill()
        parent.wait(10)
        assert wait_gone(grandchild), "the grandchild outlived its parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(grandchild, signal.SIGKILL)
        parent.kill()
        parent.wait()


@linux_only
def test_the_guard_exits_at_once_if_the_parent_is_already_gone() -> None:
    argv = guarded_argv(["/bin/sleep", "60"], orphaned_exit=70)
    parent_at = argv.index(str(os.getpid()))
    argv[parent_at] = "1"  # a parent it does not have: as if this process had died
    assert subprocess.run(argv, timeout=30).returncode == 70


# --- ports ----------------------------------------------------------------------------------


def test_a_free_port_is_bindable_and_a_listening_one_is_not() -> None:
    port = free_port()
    assert port_free("127.0.0.1", port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not port_free("127.0.0.1", port)
        assert port_accepts("127.0.0.1", port)
        assert free_port(avoid={port}) != port
    assert not port_accepts("127.0.0.1", port, timeout=0.2)


# --- files ----------------------------------------------------------------------------------


def test_write_atomic_replaces_the_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    write_atomic(target, "one\n")
    assert target.read_text() == "one\n"
    write_atomic(target, "two\n")
    assert target.read_text() == "two\n"
    write_json_atomic(target, {"version": 1, "path": tmp_path})
    assert target.read_text() == f'{{\n  "version": 1,\n  "path": "{tmp_path}"\n}}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "\udcff")  # a lone surrogate: not encodable
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
