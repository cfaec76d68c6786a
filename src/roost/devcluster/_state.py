"""The dev cluster's state file (``dev/cluster.json``) as typed, versioned structs.

``roost dev up`` rewrites it at every step (:func:`write_cluster_state`); ``roost dev
status``, ``roost dev down`` and the next ``dev up`` read it (:func:`read_cluster_state`),
possibly with another roost version. ``version`` changes when a field is removed, renamed or
changes meaning; a new field with a default needs no new version (readers ignore fields they
do not know).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from roost._statefile import StateFileError, read_state_file, write_state_file

__all__ = [
    "STATE_VERSION",
    "ClusterPhase",
    "ClusterState",
    "ClusterStateError",
    "ProcessRef",
    "WorkerRef",
    "read_cluster_state",
    "write_cluster_state",
]

#: The version of :class:`ClusterState` this code writes and reads.
STATE_VERSION = 1

#: Where a dev cluster is in its life.
ClusterPhase = Literal["idle", "starting", "running", "stopping", "stopped"]


class ProcessRef(msgspec.Struct, frozen=True):
    """A process the cluster started, recorded so that another process can tell it from a
    later one that reuses its pid."""

    pid: int
    start: int | None
    """When it started (:func:`roost._proc.start_ticks`); None where that is unknown."""


class WorkerRef(msgspec.Struct, frozen=True, kw_only=True):
    """A roostd worker as the cluster last saw it (from roostd's status snapshot)."""

    name: str
    role: str
    index: int
    pid: int | None
    state: str
    """The supervisor's worker state; a plain string so that this file does not change
    version with roostd's status."""


class ClusterState(msgspec.Struct, frozen=True, kw_only=True):
    """``cluster.json``: what a dev cluster runs, where, and where it logs."""

    version: int = STATE_VERSION
    state: ClusterPhase
    pid: int
    """The ``roost dev up`` process."""
    home: str
    """The ``ROOST_HOME`` it belongs to."""
    started_at: float | None
    updated_at: float
    addresses: dict[str, str]
    """``nats``, ``postgres`` and ``temporal`` URLs and each coordination service's
    ``host:port``; kept after a stop, so the next start reuses the ports."""
    processes: dict[str, ProcessRef]
    """What runs, by name (``nats``, ``postgres``, ``temporal``, ``roostd``)."""
    workers: dict[str, int]
    """Worker processes per role, as asked for."""
    worker_pids: list[WorkerRef]
    client_config: str | None
    """The client file it wrote (None if it wrote none)."""
    node_home: str
    """roostd's own ``ROOST_HOME``."""
    logs: str
    """The servers' and roostd's logs."""
    worker_logs: str


class ClusterStateError(StateFileError):
    """A ``cluster.json`` that cannot be used: unreadable, not of the state's shape, or of a
    version this code does not read. The message says which, names the file and, for
    another version, what to do."""


def read_cluster_state(path: Path) -> ClusterState:
    """The dev cluster state in ``path``.

    Raises :class:`FileNotFoundError` when there is none (no cluster has run), and
    :class:`ClusterStateError` when it cannot be read, has the wrong shape (the message
    names the field) or another version.
    """
    return read_state_file(
        path,
        ClusterState,
        version=STATE_VERSION,
        what="dev cluster state",
        writer="roost",
        advice="stop that cluster with the roost version that started it (`roost dev down`), "
        "or remove the file if nothing of it runs",
        error=ClusterStateError,
    )


def write_cluster_state(path: Path, state: ClusterState) -> None:
    """Write ``state`` to ``path`` atomically, as indented JSON (people read it too)."""
    write_state_file(path, state)
