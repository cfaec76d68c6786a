"""``roost server api|worker|gateway``: roost's server types, with seed 004's flags and variables;
``roost server init``: the first admin user of a server's database, and their token.

Every flag also reads its environment variable (``--api-port`` / ``API_PORT``) and maps
onto a roost setting (``[server] api_port``), so ``config.toml`` and ``ROOST_*`` work too;
a flag or its variable wins over both.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from roost.cli._common import USER_ERRORS, err_console, fail
from roost.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from roost.stores import AccessToken, User

app = typer.Typer(
    help="Run roost's server types (the API server, the run worker, the tools gateway); "
    "make the first admin."
)

_PANEL_NET = "Network"
_PANEL_DEPS = "Infrastructure"
_PANEL_AUTH = "Sign-in with an identity provider's JWTs"


def _option(panel: str, flag: str, env: str, help: str, default: Any = None) -> Any:
    """A flag that also reads its environment variable, in a help panel."""
    return typer.Option(default, flag, envvar=env, help=help, rich_help_panel=panel)


def _net(flag: str, env: str, help: str, default: Any = None) -> Any:
    return _option(_PANEL_NET, flag, env, help, default)


def _infra(flag: str, env: str, help: str, default: Any = None) -> Any:
    return _option(_PANEL_DEPS, flag, env, help, default)


def _jwt(flag: str, env: str, help: str) -> Any:
    return _option(_PANEL_AUTH, flag, env, help)


def _overrides(
    *,
    data_dir: Path | None,
    db_url: str | None,
    nats_url: str | None,
    temporal_host: str | None,
    temporal_port: int,
    temporal_namespace: str | None,
    health_port: int | None,
    **server: Any,
) -> dict[str, Any]:
    """Settings overrides from the flags that were given (``None``: not given)."""
    out: dict[str, Any] = {}
    if data_dir is not None:
        out["home"] = data_dir
    if db_url:
        out["state"] = {"url": db_url}
    if nats_url:
        out["bus"] = {"backend": "nats", "url": nats_url}
    workflows: dict[str, Any] = {}
    if temporal_host:
        workflows.update(engine="temporal", temporal_address=f"{temporal_host}:{temporal_port}")
    if temporal_namespace:
        workflows["namespace"] = temporal_namespace
    if workflows:
        out["workflows"] = workflows
    section = {k: v for k, v in server.items() if v is not None}
    if health_port is not None:
        section["health_port"] = health_port
    if section:
        out["server"] = section
    return out


def _announce(line: str) -> None:
    err_console.print(line, highlight=False)


def _load(overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        fail(str(exc), 2)


def _serve(main: Any) -> None:
    """Run ``main()`` until SIGINT or SIGTERM; expected errors are one line and exit 1."""

    async def run() -> None:
        task = asyncio.ensure_future(main())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            err_console.print("stopped")

    try:
        asyncio.run(run())
    except USER_ERRORS as exc:
        fail(str(exc) or type(exc).__name__)


DataDir = _infra("--data-dir", "DATA_DIR", "Roost's home: database, logs, agents.")
DbUrl = _infra(
    "--db-url", "DATABASE_URL", "SQLAlchemy URL of the shared database (postgresql+psycopg://...)."
)
NatsUrl = _infra("--nats-url", "NATS_URL", "NATS server URL (distributed mode).")
TemporalHost = _infra(
    "--temporal-host", "TEMPORAL_HOST", "External Temporal host (unset: the embedded server)."
)
TemporalPort = _infra("--temporal-port", "TEMPORAL_PORT", "Temporal port.", default=7233)
TemporalNamespace = _infra("--temporal-namespace", "TEMPORAL_NAMESPACE", "Temporal namespace.")
BindAddress = _net("--bind-address", "BIND_ADDRESS", "Interface to listen on [default: 0.0.0.0].")
TlsCert = _net("--tls-cert", "TLS_CERT_FILE", "TLS certificate (PEM).")
TlsKey = _net("--tls-key", "TLS_KEY_FILE", "TLS private key (PEM).")
HealthPort = _net("--health-port", "HEALTH_PORT", "Port of /health and /ready [default: 8081].")


@app.command()
def api(
    api_port: int | None = _net("--api-port", "API_PORT", "HTTP API port [default: 8080]."),
    health_port: int | None = HealthPort,
    bind_address: str | None = BindAddress,
    tls_cert: Path | None = TlsCert,
    tls_key: Path | None = TlsKey,
    disable_tls: bool | None = _net("--disable-tls", "DISABLE_TLS", "Serve plain HTTP."),
    cors_origins: str | None = _net(
        "--cors-origins",
        "CORS_ALLOWED_ORIGINS",
        "Comma-separated origins a browser may call from, or *.",
    ),
    jwt_public_key: str | None = _jwt(
        "--jwt-public-key", "JWT_PUBLIC_KEY", "PEM public key that signs accepted JWTs."
    ),
    jwt_public_key_file: Path | None = _jwt(
        "--jwt-public-key-file", "JWT_PUBLIC_KEY_FILE", "The same key, from a PEM file."
    ),
    jwks_url: str | None = _jwt("--jwks-url", "JWKS_URL", "Or the identity provider's JWKS URL."),
    jwt_issuer: str | None = _jwt("--jwt-issuer", "JWT_ISSUER", "The `iss` a JWT must carry."),
    jwt_audience: str | None = _jwt(
        "--jwt-audience", "JWT_AUDIENCE", "The `aud` a JWT must carry."
    ),
    data_dir: Path | None = DataDir,
    db_url: str | None = DbUrl,
    nats_url: str | None = NatsUrl,
    temporal_host: str | None = TemporalHost,
    temporal_port: int = TemporalPort,
    temporal_namespace: str | None = TemporalNamespace,
) -> None:
    """The API server: REST + SSE under /api/v1, the OpenAI API under /v1 (docs/server.md).

    With no infrastructure flags it is the monolith: everything in this process on the
    embedded defaults. With --db-url, --nats-url and --temporal-host it is a stateless
    replica; run as many as you like behind a load balancer, and `roost server worker`
    to execute the runs."""
    from roost.server import serve_api

    origins = [o.strip() for o in cors_origins.split(",") if o.strip()] if cors_origins else None
    config = _load(
        _overrides(
            data_dir=data_dir, db_url=db_url, nats_url=nats_url, temporal_host=temporal_host,
            temporal_port=temporal_port, temporal_namespace=temporal_namespace,
            health_port=health_port, api_port=api_port, bind_address=bind_address,
            tls_cert=tls_cert, tls_key=tls_key, disable_tls=disable_tls, cors_origins=origins,
            jwt_public_key=jwt_public_key, jwt_public_key_file=jwt_public_key_file,
            jwks_url=jwks_url, jwt_issuer=jwt_issuer, jwt_audience=jwt_audience,
        )
    )  # fmt: skip
    _serve(lambda: serve_api(config, announce=_announce))


@app.command()
def worker(
    health_port: int | None = HealthPort,
    data_dir: Path | None = DataDir,
    db_url: str | None = DbUrl,
    nats_url: str | None = NatsUrl,
    temporal_host: str | None = TemporalHost,
    temporal_port: int = TemporalPort,
    temporal_namespace: str | None = TemporalNamespace,
) -> None:
    """The run worker: executes durable runs from Temporal's task queue and publishes their
    events on NATS for the API replicas to stream. Stateless; run as many as you like."""
    from roost.server import serve_worker

    config = _load(
        _overrides(
            data_dir=data_dir, db_url=db_url, nats_url=nats_url, temporal_host=temporal_host,
            temporal_port=temporal_port, temporal_namespace=temporal_namespace,
            health_port=health_port,
        )
    )  # fmt: skip
    _serve(lambda: serve_worker(config, announce=_announce))


@app.command()
def gateway(
    gateway_port: int | None = _net(
        "--gateway-port", "GATEWAY_PORT", "The tools daemons' gRPC port [default: 9190]."
    ),
    frontend_port: int | None = _net(
        "--frontend-port",
        "FRONTEND_PORT",
        "The frontend proxy's gRPC port (users' files, processes, terminals) [default: 9191].",
    ),
    health_port: int | None = _net(
        "--health-port",
        "HEALTH_PORT",
        "Port of /health, /ready and the terminal WebSocket [default: 8080].",
    ),
    bind_address: str | None = BindAddress,
    tls_cert: Path | None = TlsCert,
    tls_key: Path | None = TlsKey,
    disable_tls: bool | None = _net("--disable-tls", "DISABLE_TLS", "Serve h2c (no TLS)."),
    data_dir: Path | None = DataDir,
    db_url: str | None = DbUrl,
    nats_url: str | None = NatsUrl,
) -> None:
    """The gateway users' tools daemons connect to (docs/daemon.md). It holds their streams
    and answers the workers' tool calls for them over NATS; run several, each daemon
    connects to one. Needs the shared database (--db-url) and NATS (--nats-url)."""
    from roost.server import serve_gateway

    config = _load(
        _overrides(
            data_dir=data_dir, db_url=db_url, nats_url=nats_url, temporal_host=None,
            temporal_port=7233, temporal_namespace=None, health_port=None,
            gateway_port=gateway_port, gateway_health_port=health_port,
            gateway_frontend_port=frontend_port,
            bind_address=bind_address, tls_cert=tls_cert, tls_key=tls_key,
            disable_tls=disable_tls,
        )
    )  # fmt: skip
    _serve(lambda: serve_gateway(config, announce=_announce))


@app.command()
def init(
    name: str = typer.Option("admin", "--name", help="The first admin user's name."),
    email: str = typer.Option("", "--email", help="Their email address."),
    data_dir: Path | None = DataDir,
    db_url: str | None = DbUrl,
    expires_in_days: float = typer.Option(
        90.0, "--expires-in-days", help="When the admin's token expires (every token does)."
    ),
) -> None:
    """Create the first admin user and print their access token, alone on stdout.

    Run it once, against the database the API server uses (the same --data-dir or
    --db-url): `TOKEN=$(roost server init)`, then `roost auth login --url URL`. The token is
    shown this once; more are made with `roost token create`."""
    from roost.stores import MAX_TOKEN_TTL_S

    max_days = MAX_TOKEN_TTL_S // 86400
    if not 0 < expires_in_days <= max_days:
        fail(f"--expires-in-days: more than 0 and at most {max_days}")
    config = _load(
        _overrides(
            data_dir=data_dir, db_url=db_url, nats_url=None, temporal_host=None,
            temporal_port=7233, temporal_namespace=None, health_port=None,
        )
    )  # fmt: skip
    try:
        token, user, record = asyncio.run(_init_admin(config, name, email, expires_in_days))
    except USER_ERRORS as exc:
        fail(str(exc) or type(exc).__name__)
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    expires = time.strftime("%Y-%m-%d", time.localtime(record.expires_at))
    err_console.print(
        f"created admin user {user.name} ({user.id}, tenant {user.tenant}) and token "
        f"{record.id} (scopes {' '.join(record.scopes)}, expires {expires})",
        highlight=False,
        soft_wrap=True,
    )
    err_console.print(
        "this token is shown once: keep it secret. Use it with: "
        f"roost auth login --url {_api_url(config)}  (the API server's URL)",
        highlight=False,
        soft_wrap=True,
    )


async def _init_admin(
    config: Settings, name: str, email: str, expires_in_days: float
) -> tuple[str, User, AccessToken]:
    """The first admin of ``config``'s database: the user, and their new token."""
    from roost.auth import DEFAULT_TENANT, Authenticator
    from roost.stores import SqlPrincipalStore, open_stores

    stores = await open_stores(config)
    try:
        if stores.db is None:
            fail("the server's users and tokens need a SQL database")
        store = SqlPrincipalStore(stores.db)
        if await store.has_admin():
            admins = [u.name for u in await store.users() if u.role == "admin"]
            fail(
                f"already initialised: the server's database has an admin user "
                f"({', '.join(admins)}); log in with their token and use `roost token create` "
                "for a new token"
            )
        user = await store.create_user(name, email=email, role="admin", tenant=DEFAULT_TENANT)
        token, record = await Authenticator(store).issue(
            user.id, "roost server init", scopes=["admin"], ttl_s=expires_in_days * 86400
        )
        await store.record(
            "user.create", tenant=user.tenant, actor=user.id, target=user.id, role=user.role,
            via="roost server init",
        )  # fmt: skip
        await store.record(
            "token.create", tenant=user.tenant, actor=user.id, target=record.id,
            scopes=list(record.scopes), via="roost server init",
        )  # fmt: skip
        return token, user, record
    finally:
        await stores.close()


def _api_url(config: Settings) -> str:
    """Where the API server of ``config`` would answer on this machine (a hint)."""
    server = config.server
    tls = server.tls_cert and server.tls_key and not server.disable_tls
    host = server.bind_address
    if host in ("0.0.0.0", "::", "127.0.0.1", "::1"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{server.api_port}"
