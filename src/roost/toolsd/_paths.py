"""Where the daemon keeps its files, per platform, and its credentials file.

* Linux (XDG): ``$XDG_CONFIG_HOME/roost`` (default ``~/.config/roost``);
* macOS: ``~/Library/Application Support/roost``;
* Windows: ``%APPDATA%\\roost``.

Inside it: ``auth/roost-daemon.json`` (the credentials, mode 0600), ``policy.toml``,
``mcp.json``, and ``daemon/`` with the PID file and the log. ``ROOST_DAEMON_HOME`` moves it
all (tests, several daemons on one machine).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def config_dir() -> Path:
    explicit = os.environ.get("ROOST_DAEMON_HOME")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "roost"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "roost"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "roost"


@dataclass(frozen=True)
class DaemonPaths:
    root: Path

    @classmethod
    def default(cls) -> DaemonPaths:
        return cls(config_dir())

    @property
    def credentials(self) -> Path:
        return self.root / "auth" / "roost-daemon.json"

    @property
    def policy(self) -> Path:
        return self.root / "policy.toml"

    @property
    def mcp(self) -> Path:
        return self.root / "mcp.json"

    @property
    def state(self) -> Path:
        return self.root / "daemon"

    @property
    def pid_file(self) -> Path:
        return self.state / "roost-daemon.pid"

    @property
    def log_file(self) -> Path:
        return self.state / "roost-daemon.log"

    @property
    def status_file(self) -> Path:
        """The running daemon's last state (connected to which gateway, since when)."""
        return self.state / "status.json"


class CredentialsError(Exception):
    """The credentials file is unreadable or incomplete (the message says how to fix it)."""


@dataclass(frozen=True)
class Credentials:
    """What ``roost daemon register`` saves."""

    token: str
    user_id: str
    gateway: str
    api_url: str = ""
    token_id: str = ""
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token, "user_id": self.user_id, "gateway": self.gateway,
            "api_url": self.api_url, "token_id": self.token_id, "created_at": self.created_at,
        }  # fmt: skip


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, readable by its owner only (0600) from the first
    byte, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_credentials(path: Path, credentials: Credentials) -> None:
    write_private(path, json.dumps(credentials.to_json(), indent=2) + "\n")


def load_credentials(path: Path) -> Credentials | None:
    """The saved credentials, ``None`` if there are none."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return Credentials(
            token=str(data["token"]),
            user_id=str(data["user_id"]),
            gateway=str(data.get("gateway", "")),
            api_url=str(data.get("api_url", "")),
            token_id=str(data.get("token_id", "")),
            created_at=float(data.get("created_at", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(
            f"{path}: unreadable daemon credentials ({exc}); run `roost daemon register` again"
        ) from None


def now() -> float:
    return time.time()
