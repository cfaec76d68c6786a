"""How the ``roost`` CLI reaches a running deployment.

``$ROOST_HOME/client.toml`` (or the file in ``$ROOST_CLIENT_CONFIG``) plus ``ROOST_CLIENT__*``
environment variables (``ROOST_CLIENT__HARNESS=control:9091``,
``ROOST_CLIENT__API_URL=https://roost.example.com``). Two ways to reach a deployment, one at
a time: the HTTP API of ``roost server api`` (``api_url`` and its bearer ``token``), or the
gRPC coordination services (``harness``, distributed mode). With neither, the CLI runs the
platform in its own process (local mode).

```toml
api_url = "https://roost.example.com"     # the API server (http or https)
token_file = "~/.roost/api-token"         # or: token = "..."
timeout_s = 10
```

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
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from roost.config._roles import GRPC_PORTS
from roost.config._settings import ConfigError, RpcSecurityConfig, default_home

_ROLES = tuple(GRPC_PORTS)
_ENV_PREFIX = "ROOST_CLIENT__"


class ClientSettings(BaseModel):
    """How the CLI reaches a deployment: the URL and token of its API server, or the
    addresses of its coordination services (gRPC), or neither (local mode)."""

    model_config = ConfigDict(extra="forbid")

    harness: str = ""
    """``host:port`` of the harness; empty (and no ``api_url``) = local mode."""
    registry: str = ""
    state: str = ""
    secret: str = ""
    catalog: str = ""
    """Empty = the harness host on the service's default port."""
    api_url: str = ""
    """``http(s)://host[:port][/prefix]`` of a roost API server (``roost server api``); set,
    the CLI talks to it over HTTP(S). Not together with ``harness``: pick one."""
    token: str = Field("", repr=False)
    """The API's bearer token (the server's admin token, until users exist)."""
    token_file: str = ""
    """A file holding the bearer token (instead of ``token``; ``~`` is expanded)."""
    ca_file: str = ""
    """A CA bundle (PEM) to verify the API server's certificate with, instead of the
    system's (a self-signed server). Certificates are always verified."""
    timeout_s: float = Field(10.0, gt=0)
    """Deadline of one call (a run's stream lasts as long as the run)."""
    security: RpcSecurityConfig = RpcSecurityConfig()
    """``[security]``: the CA, certificate and node credential of the gRPC services, as
    a node's ``[distributed.security]`` (the harness's deployment secured)."""

    @field_validator(*_ROLES)
    @classmethod
    def _check_address(cls, value: str) -> str:
        if value:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} is not host:port")
        return value

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r}: the server's base URL takes no query or fragment")
        try:
            parts.port  # noqa: B018 - a bad port raises here
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port") from None
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_way_in(self) -> ClientSettings:
        grpc = [role for role in _ROLES if getattr(self, role)]
        if self.api_url and grpc:
            raise ValueError(
                f"api_url and {grpc[0]} both name a deployment: set api_url (the HTTP API of "
                f"`roost server api`) or harness (the gRPC coordination services), not both"
            )
        if self.token and self.token_file:
            raise ValueError("token and token_file both give the API token: set one")
        return self

    @property
    def remote(self) -> bool:
        """Whether the CLI talks to a deployment over gRPC (a harness address is set)."""
        return bool(self.harness)

    @property
    def over_api(self) -> bool:
        """Whether the CLI talks to an API server over HTTP(S) (``api_url`` is set)."""
        return bool(self.api_url)

    def bearer_token(self) -> str:
        """The API token: ``token``, or the contents of ``token_file`` (a ConfigError if it
        cannot be read); empty when neither is set."""
        if self.token or not self.token_file:
            return self.token
        path = Path(self.token_file).expanduser()
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"token_file {path}: {exc.strerror or exc}") from None
        if not token:
            raise ConfigError(f"token_file {path} is empty")
        return token

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
            key = name[len(_ENV_PREFIX) :].lower()
            section, nested, field = key.partition("__")  # ROOST_CLIENT__SECURITY__CA_FILE
            if nested:
                table = values.get(section)
                values[section] = {**(table if isinstance(table, dict) else {}), field: value}
            else:
                values[key] = value
    try:
        return ClientSettings(**values)
    except ValidationError as exc:
        problems = [_problem(err) for err in exc.errors()]
        source = path if path.is_file() else "environment"
        raise ConfigError(
            f"{source}: invalid client configuration: " + "; ".join(problems)
        ) from None


def _problem(error: Any) -> str:
    """``field: message`` of one validation error (just the message for a whole-model one)."""
    message = str(error["msg"]).removeprefix("Value error, ")
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {message}" if where else message
