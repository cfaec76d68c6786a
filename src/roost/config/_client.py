"""How the ``roost`` CLI reaches a running deployment (distributed mode).

``$ROOST_HOME/client.toml`` (or the file in ``$ROOST_CLIENT_CONFIG``) plus ``ROOST_CLIENT__*``
environment variables (``ROOST_CLIENT__HARNESS=control:9091``). With no harness address the
CLI runs the platform in its own process (local mode).

```toml
harness = "control.internal:9091"
# registry, state, secret, catalog default to the harness host on ports 9090, 9092-9094
timeout_s = 10
```
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from roost.config._roles import GRPC_PORTS
from roost.config._settings import ConfigError, default_home

_ROLES = tuple(GRPC_PORTS)
_ENV_PREFIX = "ROOST_CLIENT__"


class ClientSettings(BaseModel):
    """Addresses of a deployment's coordination services, as the CLI uses them."""

    model_config = ConfigDict(extra="forbid")

    harness: str = ""
    """``host:port`` of the harness; empty = local mode (no deployment to talk to)."""
    registry: str = ""
    state: str = ""
    secret: str = ""
    catalog: str = ""
    """Empty = the harness host on the service's default port."""
    timeout_s: float = Field(10.0, gt=0)
    """Deadline of one call (a run's stream lasts as long as the run)."""

    @field_validator(*_ROLES)
    @classmethod
    def _check_address(cls, value: str) -> str:
        if value:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} is not host:port")
        return value

    @property
    def remote(self) -> bool:
        """Whether the CLI talks to a deployment (a harness address is set)."""
        return bool(self.harness)

    def address(self, role: str) -> str:
        """Where coordination service ``role`` answers."""
        explicit: str = getattr(self, role)
        if explicit:
            return explicit
        host = self.harness.rpartition(":")[0] or "127.0.0.1"
        return f"{host}:{GRPC_PORTS[role]}"


def client_config_path() -> Path:
    explicit = os.environ.get("ROOST_CLIENT_CONFIG")
    return Path(explicit).expanduser() if explicit else default_home() / "client.toml"


def load_client_settings() -> ClientSettings:
    """The client settings from file + environment; :class:`ConfigError` names the problem."""
    path = client_config_path()
    values: dict[str, Any] = {}
    if path.is_file():
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for name, value in os.environ.items():
        if name.startswith(_ENV_PREFIX):
            values[name[len(_ENV_PREFIX) :].lower()] = value
    try:
        return ClientSettings(**values)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        source = path if path.is_file() else "environment"
        raise ConfigError(
            f"{source}: invalid client configuration: " + "; ".join(problems)
        ) from None
