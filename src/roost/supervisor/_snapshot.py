"""The supervisor's status snapshot (``roostd.json``) as typed, versioned structs.

The supervisor rewrites the file on every change (:func:`write_snapshot`); other processes,
possibly of another roost version, read it (:func:`read_snapshot`). ``version`` changes when
a field is removed, renamed or changes meaning; a new field with a default needs no new
version (readers ignore fields they do not know).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import msgspec

from roost._proc import describe_returncode
from roost._statefile import StateFileError, read_state_file, write_state_file

__all__ = [
    "STATUS_VERSION",
    "ExitInfo",
    "SnapshotError",
    "SupervisorSnapshot",
    "SupervisorState",
    "WorkerSnapshot",
    "WorkerState",
    "read_snapshot",
    "write_snapshot",
]

#: The version of :class:`SupervisorSnapshot` this code writes and reads.
STATUS_VERSION = 1

#: Where a worker is in its life (see :mod:`roost.supervisor._supervisor`).
WorkerState = Literal[
    "pending", "starting", "ready", "unhealthy", "backoff", "stopping", "stopped", "failed"
]
#: Where the supervisor itself is in its life.
SupervisorState = Literal["idle", "starting", "running", "stopping", "stopped"]


class ExitInfo(msgspec.Struct, frozen=True):
    """How a worker's last process ended."""

    code: int | None
    """Exit status; None when a signal ended it (or it never started)."""
    signal: str | None
    """The signal that ended it (``"SIGKILL"``), if one did."""
    description: str
    """In words, e.g. ``exit code 3`` or ``killed by SIGKILL``."""
    at: float
    """When it ended (``time.time()``)."""
    reason: str = ""
    """Why the supervisor ended it, if it did (e.g. ``no heartbeat for 6.0s``)."""

    @classmethod
    def from_returncode(cls, returncode: int, reason: str = "") -> ExitInfo:
        """The exit of a process with ``returncode`` (negative: the signal), now."""
        code, sig, description = describe_returncode(returncode)
        return cls(code, sig, description, time.time(), reason)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (as written to the status file)."""
        return msgspec.structs.asdict(self)

    def __str__(self) -> str:
        return f"{self.description} ({self.reason})" if self.reason else self.description


class WorkerSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One supervised worker in :class:`SupervisorSnapshot`."""

    name: str
    """``role-index``, e.g. ``inference-0``."""
    role: str
    index: int
    phase: int
    """The start phase it belongs to (1-based)."""
    pid: int | None
    """Its current process, if one runs."""
    state: WorkerState
    since: float
    """When it entered ``state``."""
    started_at: float | None
    """When its current (or last) process started."""
    ready_at: float | None
    """When that process reported ready."""
    restarts: int
    last_exit: ExitInfo | None
    details: dict[str, Any]
    """What the worker reported with its readiness (ports, models, ...)."""
    log: str
    """Its log file."""


class SupervisorSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The supervisor's status, as written to ``roostd.json`` for other processes."""

    version: int = STATUS_VERSION
    name: str
    """The supervisor's name (its run files are ``<name>.json`` and ``<name>.lock``)."""
    pid: int
    """The supervisor's own process."""
    node: str
    state: SupervisorState
    started_at: float | None
    updated_at: float
    """When this snapshot was written (it is rewritten at least every status interval)."""
    phase: int
    """The phase being started or, once all are, the last one (0 before the first)."""
    phases: int
    heartbeat_s: float
    log_dir: str
    workers: list[WorkerSnapshot]


class SnapshotError(StateFileError):
    """A status file that cannot be used: unreadable, not of the snapshot's shape, or of a
    version this code does not read. The message says which, and names the file."""


def read_snapshot(path: Path) -> SupervisorSnapshot:
    """The snapshot in ``path``.

    Raises :class:`FileNotFoundError` when there is none, and :class:`SnapshotError` when it
    cannot be read, has the wrong shape (the message names the field) or another version.
    """
    return read_state_file(
        path,
        SupervisorSnapshot,
        version=STATUS_VERSION,
        what="status snapshot",
        writer="roostd",
        advice="use the roost that runs that roostd, or restart roostd with this one",
        error=SnapshotError,
    )


def write_snapshot(path: Path, snapshot: SupervisorSnapshot) -> None:
    """Write ``snapshot`` to ``path`` atomically, as indented JSON (people read it too)."""
    write_state_file(path, snapshot)
