"""What the supervisor is given: worker specs, its configuration, and its errors."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "AlreadyRunningError",
    "StartupError",
    "SupervisorConfig",
    "SupervisorError",
    "WorkerSpec",
]

# a role ends up in file names (logs) and log lines: keep it to a safe, readable alphabet
_ROLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class SupervisorError(Exception):
    """The supervisor cannot do what it was asked; the message says why."""


class AlreadyRunningError(SupervisorError):
    """Another supervisor holds the lock of this run directory."""

    def __init__(self, lock_path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "a process that did not record its pid"
        super().__init__(
            f"another supervisor ({who}) is already running with lock {lock_path}; "
            "stop it first (or use another home)"
        )
        self.lock_path = lock_path
        self.pid = pid


class StartupError(SupervisorError):
    """A worker never became ready, so the phases after it could not start."""

    def __init__(self, worker: str, message: str) -> None:
        super().__init__(message)
        self.worker = worker


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process: ``argv`` run with ``env`` added to the supervisor's environment.

    ``role`` and ``index`` name it (``<role>-<index>``: its log file and its line in the
    status); the supervisor gives it nothing else but the health pipe (see
    :class:`~roost.supervisor.WorkerLink`).
    """

    role: str
    index: int
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _ROLE.fullmatch(self.role):
            raise ValueError(
                f"worker role {self.role!r} must be letters, digits, '_', '.' or '-' "
                "(it names the worker's log file)"
            )
        if self.index < 0:
            raise ValueError(f"worker {self.role} has index {self.index}; indexes are >= 0")
        if not self.argv:
            raise ValueError(f"worker {self.role}-{self.index} has an empty argv")
        # frozen means frozen: copy what the caller may still mutate
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


@dataclass(frozen=True)
class SupervisorConfig:
    """How the supervisor runs its workers.

    Files: each worker's output is appended to ``log_dir/<role>-<index>.log``; the status
    snapshot is ``run_dir/<name>.json`` and the lock ``run_dir/<name>.lock``.
    """

    log_dir: Path
    run_dir: Path
    name: str = "roostd"
    node: str = ""
    """Shown in the status; empty = this host's name."""
    heartbeat_s: float = 2.0
    """How often a ready worker beats (told to the worker through its environment)."""
    missed_beats: int = 3
    """A ready worker silent for ``missed_beats * heartbeat_s`` is hung: killed, restarted."""
    start_timeout_s: float = 60.0
    """How long a worker may take to report ready before it is killed (a failed start)."""
    start_retries: int = 3
    """While the phases start, a worker that fails this many restarts in a row (after its
    first attempt) stops the supervisor: the phases after it could not work. Once everything
    is up, crashed workers are restarted without limit (with backoff)."""
    restart_backoff_s: float = 0.5
    """Delay before the first restart; it doubles per crash in a row."""
    restart_backoff_max_s: float = 30.0
    stable_after_s: float = 30.0
    """A worker that stayed ready this long before it crashed has its crash streak (and so
    its backoff) reset."""
    stop_timeout_s: float = 15.0
    """How long a worker gets to exit after SIGTERM before its process group is SIGKILLed."""
    status_interval_s: float = 1.0
    """The status snapshot is rewritten on every change and at least this often."""

    def __post_init__(self) -> None:
        for key in (
            "heartbeat_s",
            "start_timeout_s",
            "restart_backoff_s",
            "restart_backoff_max_s",
            "stable_after_s",
            "stop_timeout_s",
            "status_interval_s",
        ):
            if not getattr(self, key) > 0:
                raise ValueError(f"SupervisorConfig.{key} must be > 0, not {getattr(self, key)}")
        if self.missed_beats < 1 or self.start_retries < 0:
            raise ValueError("SupervisorConfig: missed_beats must be >= 1, start_retries >= 0")
        if not _ROLE.fullmatch(self.name):
            raise ValueError(f"SupervisorConfig.name {self.name!r} is not a safe file name")

    @property
    def status_path(self) -> Path:
        return self.run_dir / f"{self.name}.json"

    @property
    def lock_path(self) -> Path:
        return self.run_dir / f"{self.name}.lock"

    def log_path(self, spec: WorkerSpec) -> Path:
        return self.log_dir / f"{spec.name}.log"

    @property
    def unhealthy_after_s(self) -> float:
        return self.missed_beats * self.heartbeat_s
