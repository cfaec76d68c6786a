"""The supervisor's files: the lock that makes it one per run directory, and the status
snapshot other processes (``roost status``) read."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from roost._proc import pid_alive
from roost.supervisor._snapshot import (
    STATUS_VERSION,
    SnapshotError,
    SupervisorSnapshot,
    read_snapshot,
)
from roost.supervisor._spec import AlreadyRunningError

__all__ = [
    "STATUS_VERSION",
    "SupervisorLock",
    "SupervisorStatus",
    "lock_holder",
    "read_status",
]


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


class SupervisorLock:
    """An exclusive ``flock`` on ``path`` holding the owner's pid, for one supervisor per run
    directory. The kernel drops it when the process dies, so a crash never leaves it stale.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, wait_s: float = 0.5) -> None:
        """Take the lock or raise :class:`AlreadyRunningError` naming the holder's pid.

        Waits up to ``wait_s``: :func:`lock_holder` probes the lock for an instant, and a
        status query must not make a starting supervisor fail.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC (Python's default): workers must not inherit, and so hold, the lock
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise AlreadyRunningError(self.path, _read_pid(self.path)) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        # the file stays: unlinking a lock file lets two processes lock different inodes
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def lock_holder(path: Path) -> int | None:
    """The pid of the process holding the supervisor lock at ``path``, 0 if it is held but
    names no pid, or None when nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(path) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SupervisorStatus:
    """What :func:`read_status` found: the snapshot, and whether its supervisor still runs."""

    running: bool
    snapshot: SupervisorSnapshot | None
    """The status file, when it could be read."""
    reason: str
    """Why it is not running or, when it runs, why its snapshot could not be read (empty
    when it runs and could be read)."""


def read_status(status_path: Path, lock_path: Path) -> SupervisorStatus:
    """Read a supervisor's status snapshot and check that the supervisor is alive: its pid
    runs and it still holds the lock (so a reused pid is not mistaken for it)."""
    try:
        snapshot = read_snapshot(status_path)
    except FileNotFoundError:
        return SupervisorStatus(False, None, f"no status in {status_path}")
    except SnapshotError as exc:
        # a roostd of another version may well run: only its lock says so
        return SupervisorStatus(lock_holder(lock_path) is not None, None, str(exc))
    pid = snapshot.pid
    if pid <= 0:
        return SupervisorStatus(False, snapshot, f"{status_path} names no supervisor pid")
    holder = lock_holder(lock_path)
    if not pid_alive(pid) or holder is None:
        gone = f"pid {pid}, which wrote {status_path}, is gone (it did not stop cleanly)"
        return SupervisorStatus(False, snapshot, gone)
    if holder not in (0, pid):
        return SupervisorStatus(
            False, snapshot, f"{status_path} is stale: the lock is held by pid {holder}, not {pid}"
        )
    return SupervisorStatus(True, snapshot, "")
