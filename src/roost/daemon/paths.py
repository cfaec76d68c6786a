"""Where ``roostd`` keeps its files under ``$ROOST_HOME`` (the CLI reads them too)."""

from __future__ import annotations

from pathlib import Path

SUPERVISOR_NAME = "roostd"


def log_dir(home: Path) -> Path:
    """Worker logs: ``<role>-<index>.log``, appended to across restarts."""
    return home / "logs"


def run_dir(home: Path) -> Path:
    """The supervisor's lock and status snapshot."""
    return home / "run"


def status_path(home: Path) -> Path:
    return run_dir(home) / f"{SUPERVISOR_NAME}.json"


def lock_path(home: Path) -> Path:
    return run_dir(home) / f"{SUPERVISOR_NAME}.lock"
