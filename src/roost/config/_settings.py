"""Roost configuration: ``config.toml`` plus ``ROOST_*`` environment overrides.

Precedence (highest first): keyword arguments, environment (``ROOST_BUS__BACKEND=nats``; nested
keys joined by ``__``), the TOML file, defaults. The file is ``$ROOST_CONFIG`` if set, else
``$ROOST_HOME/config.toml`` (``ROOST_HOME`` defaults to ``~/.roost``). Unknown keys and bad
values are errors that name the key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from roost.config._roles import ENGINE_ROLES, ROLES, WORKER_ROLES
from roost.protocol import ENGINE_NAMES, ErrorCode, RoostError


class ConfigError(RoostError):
    """The configuration is invalid; the message names the file, the key and the problem."""

    code = ErrorCode.INVALID_CONFIG


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BusConfig(_Section):
    backend: Literal["memory", "nats"] = "memory"
    """``memory`` runs everything in one process; ``nats`` connects to ``url``."""
    url: str = "nats://127.0.0.1:4222"
    user: str = ""
    """The NATS user this process connects as (empty: none)."""
    password_file: Path | None = None
    """The file holding that user's password."""
    credentials_dir: Path | None = None
    """roostd: each worker connects as the user named after its role, with the password in
    ``<credentials_dir>/<role>.password`` (``roost dev up`` makes them)."""
    grant_key_file: Path | None = None
    """Ed25519 private key (PEM) with which this process's runs sign their requests' run
    grants (processes that run agents). docs/security.md."""
    grant_public_key_file: Path | None = None
    """Its public key: set, this process's services refuse requests without a valid grant
    for the agent, session and branch they name."""

    def password(self) -> str:
        """The password in ``password_file`` (empty without one)."""
        if self.password_file is None:
            return ""
        try:
            return Path(self.password_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"[bus] password_file: cannot read {self.password_file}: {exc}"
            ) from None


class StateConfig(_Section):
    backend: Literal["sqlite", "postgres"] = "sqlite"
    url: str = ""
    """SQLAlchemy URL; empty means ``sqlite:///$ROOST_HOME/roost.db``."""


class InferenceConfig(_Section):
    default_model: str = "smollm2"
    """Model used by agents that do not name one."""
    timeout_s: float = Field(120.0, gt=0)
    threads: int = Field(0, ge=0)
    """CPU threads for the embedded engine; 0 lets llama.cpp choose."""
    concurrency: int = Field(64, ge=1)
    """Chat requests one inference worker serves at once; more wait in its queue. 1 models a
    CPU-bound engine that generates one answer at a time (llama.cpp), so N workers serve N."""


class EmbeddingConfig(_Section):
    default_model: str = "minilm"
    timeout_s: float = Field(60.0, gt=0)


class EnginesConfig(_Section):
    """The embedded engines (llama-cpp, sentence-transformers) of this process."""

    isolate: bool = True
    """Run each embedded engine in a child process, so a native crash (a segfault in
    llama.cpp) fails the calls in flight with a retryable error and the engine restarts,
    instead of killing this process; ``false`` runs them in-process (a little faster)."""
    start_timeout_s: float = Field(60.0, gt=0)
    """How long an engine process may take to start before its calls fail."""


class ToolsConfig(_Section):
    daemon: Literal["auto", "local", "gateway", "off"] = "auto"
    """Where daemon tools (``runs_on = "daemon"`` or ``"anywhere"`` in ``agent.toml``) run:
    ``local`` in this process, under this machine's daemon policy and MCP config (the
    monolith); ``gateway`` on the run owner's tools daemon, through whichever gateway holds
    it over the bus; ``auto`` is ``local`` on the memory bus and ``gateway`` on NATS;
    ``off`` refuses them. docs/daemon.md."""
    local_owners: list[str] = []
    """``local``: the users (ids) of an API server on this process whose runs also get the
    daemon tools of this machine; runs started here with no owner always do."""
    timeout_s: float = Field(60.0, gt=0)
    """The longest a tool call may run (capped by the caller's request timeout)."""


class RuntimeConfig(_Section):
    request_timeout_s: float = Field(30.0, gt=0)
    """Default timeout of a service call made by an agent."""
    run_timeout_s: float = Field(600.0, gt=0)
    """Default timeout of a whole agent run."""
    max_turns: int = Field(8, ge=1)
    """Most model calls one declarative chat run may make (each tool round is a turn)."""
    process_start_timeout_s: float = Field(30.0, gt=0)
    """How long a process-runtime agent may take to answer ``/health``."""
    record_events: Literal["inline", "projection"] = "inline"
    """How runs keep the durable copy of their events: ``inline``, each run writes them to
    the session DAG itself; ``projection``, runs publish them to the JetStream stream
    ``ROOST_EVENTS`` and ``projection`` workers write them (distributed mode: needs
    ``bus.backend = "nats"`` and at least one projection worker in the deployment)."""


class AgentsConfig(_Section):
    """Installing agents' own dependencies (``requirements.txt``, ``pyproject.toml``,
    ``package.json`` + ``package-lock.json``) into environments cached by bundle digest."""

    install_timeout_s: float = Field(600.0, gt=0)
    """Longest one install (``pip install`` or ``npm ci``) of one agent version may take."""
    pip_args: list[str] = []
    """Extra arguments for ``pip install`` (``["--no-index", "--find-links", "/wheels"]``,
    ``["--index-url", "https://pypi.internal/simple"]``)."""
    npm_args: list[str] = []
    """Extra arguments for ``npm ci`` (``["--registry", "https://npm.internal"]``,
    ``["--ignore-scripts"]``)."""
    envs_dir: Path | None = None
    """Where environments live; empty = ``$ROOST_HOME/envs``."""


class WorkflowsConfig(_Section):
    engine: Literal["temporal", "inprocess"] = "temporal"
    """``temporal``: every run is a durable workflow. ``inprocess``: runs live in the
    process that started them (faster, lost on a crash; for tests of agents)."""
    temporal_address: str = ""
    """``host:port`` of an external Temporal; empty starts the embedded dev server."""
    namespace: str = "default"
    task_queue: str = "roost-agents"
    max_attempts: int = Field(5, ge=1)
    """Attempts of a service call that fails transiently (timeouts, 429, 5xx)."""
    heartbeat_timeout_s: float = Field(10.0, gt=0)
    """How soon a long call on a dead worker is noticed and retried elsewhere."""
    connect_timeout_s: float = Field(15.0, gt=0)


class ServerConfig(_Section):
    """``roost server api`` and ``roost server worker`` (docs/server.md). Each key also has
    the flag and environment variable of seed 004's table (``--api-port`` / ``API_PORT``)."""

    api_port: int = Field(8080, ge=0, le=65535)
    """The HTTP API's port (0: any free port, printed at start)."""
    health_port: int = Field(8081, ge=0, le=65535)
    """The port of ``/health`` (liveness) and ``/ready`` (readiness)."""
    gateway_port: int = Field(9190, ge=0, le=65535)
    """``roost server gateway``: the port tools daemons dial (gRPC; docs/daemon.md)."""
    gateway_frontend_port: int = Field(9191, ge=0, le=65535)
    """``roost server gateway``: the frontend proxy's gRPC port (a signed-in user's files,
    processes, terminals and daemon status on their own machine)."""
    gateway_health_port: int = Field(8080, ge=0, le=65535)
    """``roost server gateway``: its HTTP port: ``/health``, ``/ready`` and the terminal
    WebSocket (``/api/v1/terminal/ws``)."""
    bind_address: str = "0.0.0.0"
    admin_token: str = ""
    """The static token that guards every route until users and auth exist; empty: the
    server makes one and keeps it in ``$ROOST_HOME/server/admin-token`` (mode 0600)."""
    cors_origins: list[str] = []
    """Origins a browser may call the API from (``["*"]``: any)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    disable_tls: bool = False
    """Serve plain HTTP even if a certificate is configured."""
    max_body_bytes: int = Field(80 * 1024 * 1024, ge=1024)
    """The largest request body (an agent bundle is at most 64 MB)."""
    heartbeat_s: float = Field(15.0, gt=0)
    """How often an idle event stream sends a keep-alive comment."""
    keep_alive_s: int = Field(75, ge=1)
    """How long an idle HTTP/1.1 connection stays open. Longer than a load balancer's idle
    timeout (60 s on the common ones), so the server never closes a connection the balancer
    or a client is about to reuse: that race is a reset, seen as a 502 or a read error."""
    rate_limit_per_s: float = Field(50.0, ge=0)
    """Requests per second each access token may make (per replica; 0: no limit)."""
    rate_limit_burst: int = Field(200, ge=1)
    """How many requests a token may make at once before the rate applies."""
    token_cache_s: float = Field(5.0, ge=0, le=300)
    """How long a verified token is trusted without a database read: a token revoked on
    another replica still works here for at most this long."""
    jwt_public_key: str = ""
    """A PEM public key that signs the bearer JWTs the API accepts (docs/security.md)."""
    jwt_public_key_file: Path | None = None
    """The same key, from a file."""
    jwks_url: str = ""
    """Or the URL of the identity provider's JWKS (keys picked by the token's ``kid``)."""
    jwks_refresh_cooldown_s: float = Field(30.0, ge=0, le=3600)
    """The least time between two reads of the JWKS for a ``kid`` it lacked: a rotated-in
    key works within this long, and forged ``kid`` values cannot flood the provider."""
    jwt_issuer: str = ""
    """The ``iss`` every accepted JWT must carry (required once JWTs are configured)."""
    jwt_audience: str = ""
    """The ``aud`` every accepted JWT must carry (required once JWTs are configured)."""
    jwt_algorithms: list[str] = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
    """The signature algorithms accepted: asymmetric ones only."""
    jwt_leeway_s: float = Field(60.0, ge=0, le=600)
    """Clock skew allowed when checking ``exp``, ``nbf`` and ``iat``."""
    jwt_create_users: bool = False
    """Make a member user the first time a valid JWT's subject is seen (else an admin adds
    them first, with their ``subject``)."""
    jwt_tenant_claim: str = ""
    """The claim naming the user's tenant when one is made from a JWT (empty: the default
    tenant)."""
    tenant_model_urls: Literal["public", "any"] = "public"
    """Which ``base_url`` a tenant's model may have: ``public``, an https URL whose host
    resolves to public addresses only (so no tenant can make roost's workers call into
    the private network); ``any``, whatever it likes (one trusted team). The default
    tenant's admins (operators) may always register any URL."""
    page_size: int = Field(50, ge=1, le=1000)
    """Items per page of a list when the client does not say (at most ``max_page_size``)."""
    max_page_size: int = Field(200, ge=1, le=10000)


def _default_workers() -> dict[str, int | dict[str, int]]:
    return {role.name: role.default_count for role in ROLES}


class RpcSecurityConfig(_Section):
    """How roost's processes trust each other over gRPC (docs/security.md): TLS with the
    deployment's CA, optionally mutual, and a per-node credential on every call.
    ``roost cluster credentials`` makes all of these files; ``roost dev up`` does too."""

    ca_file: Path | None = None
    """The CA (PEM) that signed the servers' certificates (and with ``mtls``, the nodes').
    Set: every channel is TLS and verifies its server against it."""
    cert_file: Path | None = None
    """This node's certificate (PEM), served by its coordination services and, with
    ``mtls``, shown as a client."""
    key_file: Path | None = None
    """Its private key (PEM)."""
    mtls: bool = False
    """Servers also require a client certificate signed by ``ca_file``."""
    credential_file: Path | None = None
    """This node's credential, sent on every call (``roost-node:<node>:<signature>``)."""
    cluster_key_file: Path | None = None
    """Servers: the key node credentials are checked with. Set: a call without a valid
    credential is ``UNAUTHENTICATED``."""
    revoked_nodes: list[str] = []
    """Nodes whose credentials are refused even though they verify."""


class DistributedConfig(_Section):
    """The ``roostd`` supervisor and the services of a multi-process deployment."""

    security: RpcSecurityConfig = RpcSecurityConfig()
    """``[distributed.security]``: TLS and node credentials of the gRPC services."""

    node: str = ""
    """This node's name in the registry; empty = the host name."""
    listen_host: str = "127.0.0.1"
    """Where this node's coordination services listen (``0.0.0.0`` to serve other nodes)."""
    registry: str = "127.0.0.1:9090"
    harness: str = "127.0.0.1:9091"
    state: str = "127.0.0.1:9092"
    secret: str = "127.0.0.1:9093"
    catalog: str = "127.0.0.1:9094"
    """``host:port`` of each coordination service: where clients and other workers reach
    it, and (its port) where a local worker of that role listens."""
    workers: dict[str, int | dict[str, int]] = Field(default_factory=_default_workers)
    """Worker processes per role on this node; 0 disables a role. Roles not named keep
    their default (1; projection 0). ``inference`` and ``embedding`` also take a table of
    counts per engine (``[distributed.workers.inference]`` ``llama-cpp = 2``,
    ``openai = 1``): those workers serve only that engine; a plain count serves every
    engine installed on the node."""
    heartbeat_s: float = Field(2.0, gt=0)
    """How often a worker tells the registry (and its supervisor) it is alive."""
    worker_ttl_s: float = Field(10.0, gt=0)
    """A worker not heard from for this long is dead: it no longer counts as serving."""
    start_timeout_s: float = Field(60.0, gt=0)
    """How long a worker may take to become ready before the supervisor gives up on it."""
    restart_backoff_s: float = Field(0.5, gt=0)
    """First delay before restarting a crashed worker; it doubles per crash in a row."""
    restart_backoff_max_s: float = Field(30.0, gt=0)
    stop_timeout_s: float = Field(15.0, gt=0)
    """How long a worker gets to stop after SIGTERM before it is killed."""
    connect_timeout_s: float = Field(10.0, gt=0)
    """How long to wait for NATS, Postgres or a coordination service before failing."""

    @field_validator("workers", mode="before")
    @classmethod
    def _normalize_counts(cls, value: Any) -> Any:
        """Counts as whole numbers (environment values arrive as text), one clear message
        for anything else."""
        if not isinstance(value, dict):
            return value

        def count(name: str, n: Any) -> int:
            if isinstance(n, str) and n.strip().lstrip("-").isdigit():
                n = int(n)
            if isinstance(n, bool) or not isinstance(n, int):
                raise ValueError(f"{name} = {n!r}: a worker count is a whole number >= 0")
            return n

        return {
            role: (
                {engine: count(f"{role}.{engine}", n) for engine, n in n_or_table.items()}
                if isinstance(n_or_table, dict)
                else count(role, n_or_table)
            )
            for role, n_or_table in value.items()
        }

    @field_validator("workers")
    @classmethod
    def _check_workers(
        cls, value: dict[str, int | dict[str, int]]
    ) -> dict[str, int | dict[str, int]]:
        unknown = sorted(set(value) - set(WORKER_ROLES))
        if unknown:
            raise ValueError(
                f"unknown worker role(s) {', '.join(map(repr, unknown))} "
                f"(roles: {', '.join(WORKER_ROLES)})"
            )
        for role, count in value.items():
            if isinstance(count, dict):
                if role not in ENGINE_ROLES:
                    raise ValueError(
                        f"{role}: counts per engine are for {' and '.join(ENGINE_ROLES)} only"
                    )
                bad = sorted(set(count) - set(ENGINE_NAMES))
                if bad:
                    raise ValueError(
                        f"{role}: unknown engine(s) {', '.join(map(repr, bad))} "
                        f"(engines: {', '.join(ENGINE_NAMES)})"
                    )
                for engine, n in count.items():
                    if n < 0:
                        raise ValueError(
                            f"{role}.{engine} = {n}: a worker count is a whole number >= 0"
                        )
            elif count < 0:
                raise ValueError(f"{role} = {count}: a worker count is a whole number >= 0")
        return {**_default_workers(), **value}

    def count(self, role: str) -> int:
        """How many workers of ``role`` this node runs (every engine's, for a table)."""
        value = self.workers.get(role, 0)
        return sum(value.values()) if isinstance(value, dict) else value

    def engine_counts(self, role: str) -> list[tuple[str | None, int]]:
        """``(engine, count)`` pairs of ``role``: ``[(None, n)]`` for a plain count (every
        installed engine), one pair per engine for a table."""
        value = self.workers.get(role, 0)
        if isinstance(value, dict):
            return [(engine, n) for engine, n in value.items() if n > 0]
        return [(None, value)] if value > 0 else []

    def address(self, role: str) -> str:
        """The ``host:port`` of coordination service ``role``."""
        value: str = getattr(self, role)
        return value

    def port(self, role: str) -> int:
        return int(self.address(role).rsplit(":", 1)[1])

    @field_validator("registry", "harness", "state", "secret", "catalog")
    @classmethod
    def _check_address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port")
        return value


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"


def default_home() -> Path:
    return Path(os.environ.get("ROOST_HOME") or Path.home() / ".roost").expanduser()


class Settings(BaseSettings):
    """All roost settings. Build with :func:`load_settings` to get clear errors."""

    model_config = SettingsConfigDict(
        env_prefix="ROOST_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    home: Path = Field(default_factory=default_home)
    """Data directory: database, secrets key, logs, deployed agents."""
    bus: BusConfig = BusConfig()
    state: StateConfig = StateConfig()
    inference: InferenceConfig = InferenceConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    engines: EnginesConfig = EnginesConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    tools: ToolsConfig = ToolsConfig()
    agents: AgentsConfig = AgentsConfig()
    workflows: WorkflowsConfig = WorkflowsConfig()
    distributed: DistributedConfig = DistributedConfig()
    server: ServerConfig = ServerConfig()
    log: LogConfig = LogConfig()

    @property
    def envs_dir(self) -> Path:
        """Where agents' dependency environments live."""
        return self.agents.envs_dir or self.home / "envs"

    @property
    def database_url(self) -> str:
        return self.state.url or f"sqlite:///{self.home / 'roost.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file chosen by :func:`config_path` (absent file = no settings)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    path: Path | None = None  # set by load_settings; config_path() otherwise

    def __call__(self) -> dict[str, Any]:
        path = self.path or config_path()
        if not path.is_file():
            return {}
        try:
            return tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


_ENV_SKIP = {"ROOST_CONFIG", "ROOST_WORKER_ROLE", "ROOST_WORKER_INDEX", "ROOST_WORKER_ENGINE"}


def config_path() -> Path:
    explicit = os.environ.get("ROOST_CONFIG")
    return Path(explicit).expanduser() if explicit else default_home() / "config.toml"


def load_settings(**overrides: Any) -> Settings:
    """Load settings from file + environment, raising :class:`ConfigError` on any problem."""
    path = config_path()
    # variables that configure the process, not settings: hide them from the env source
    saved = {k: os.environ.pop(k) for k in _ENV_SKIP if k in os.environ}
    _TomlSource.path = path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            problems.append(f"{key}: {err['msg']}")
        source = path if path.is_file() else "environment"
        raise ConfigError(f"{source}: invalid configuration: " + "; ".join(problems)) from None
    finally:
        _TomlSource.path = None
        os.environ.update(saved)
