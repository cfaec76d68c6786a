"""From settings to a running node: the phases of workers, and the checks made before any
of them starts (so a wrong URL is one clear error, not a log full of crash-looping workers).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from roost.config import (
    BUS_ROLES,
    DATABASE_ROLES,
    ENGINE_ROLES,
    PHASES,
    WORKER_ROLES,
    Settings,
)
from roost.daemon import paths
from roost.daemon._env import ENGINE_ENV, INDEX_ENV, ROLE_ENV
from roost.daemon._roles import ROLE_RUNNERS
from roost.protocol import ErrorCode, RoostError
from roost.supervisor import SupervisorConfig, WorkerSpec

__all__ = [
    "NodePlan",
    "PlanError",
    "PreflightError",
    "plan_node",
    "preflight",
    "supervisor_config",
    "worker_argv",
]


class PlanError(RoostError):
    """The configuration asks for something this node cannot run (exit code 2)."""

    code = ErrorCode.INVALID_CONFIG


class PreflightError(Exception):
    """Something the workers need is unreachable (exit code 1)."""


@dataclass(frozen=True)
class NodePlan:
    phases: list[list[WorkerSpec]]

    @property
    def roles(self) -> set[str]:
        return {spec.role for phase in self.phases for spec in phase}

    @property
    def workers(self) -> int:
        return sum(len(phase) for phase in self.phases)


def _worker_env(
    role: str, index: int, engine: str | None, credentials: Path | None
) -> dict[str, str]:
    env = {ROLE_ENV: role, INDEX_ENV: str(index)}
    if engine is not None:
        env[ENGINE_ENV] = engine
    if credentials is not None:
        # each role on the bus as its own user, with only its role's permissions
        env["ROOST_BUS__USER"] = role
        env["ROOST_BUS__PASSWORD_FILE"] = str(credentials / f"{role}.password")
    return env


def worker_argv() -> list[str]:
    """Every worker is this same program; its role comes from the environment."""
    return [sys.executable, "-m", "roost.daemon.worker"]


def is_postgres(settings: Settings) -> bool:
    return settings.state.backend == "postgres" or settings.database_url.startswith("postgres")


def plan_node(settings: Settings) -> NodePlan:
    """The phases of workers ``[distributed] workers`` asks for (roles in WORKER_ROLES
    order, ``count`` workers each, indexes from 0), or :class:`PlanError`."""
    if settings.bus.backend != "nats":
        raise PlanError(
            'distributed mode needs bus.backend = "nats": workers are separate processes '
            "(set ROOST_BUS__BACKEND=nats and ROOST_BUS__URL, or use `roost` alone for one "
            "process)"
        )
    if settings.state.backend == "postgres" and not settings.state.url:
        raise PlanError(
            'state.backend = "postgres" needs state.url (postgresql+psycopg://USER@HOST/DB)'
        )
    config = settings.distributed
    enabled = [role for role in WORKER_ROLES if config.count(role) > 0]
    if not enabled:
        raise PlanError("no workers to run: every count in [distributed] workers is 0")
    missing = [role for role in enabled if role not in ROLE_RUNNERS]
    if missing:
        which = f"roles {', '.join(missing)} have" if len(missing) > 1 else f"role {missing[0]} has"
        raise PlanError(
            f"{which} no runner in this build (set {' = 0, '.join(missing)} = 0 in "
            "[distributed.workers] to run without; runnable roles: "
            f"{', '.join(r for r in WORKER_ROLES if r in ROLE_RUNNERS)})"
        )
    from roost.engines import installed_engines

    installed = installed_engines()
    for role in ENGINE_ROLES:
        missing_engines = [e for e, _ in config.engine_counts(role) if e and e not in installed]
        if missing_engines:
            raise PlanError(
                f"distributed.workers.{role}: engine(s) {', '.join(missing_engines)} not "
                f"installed on this node (installed: {', '.join(installed) or 'none'}; the "
                "embedded engines come with roost[local])"
            )
    groups = [list(phase) for phase in PHASES]
    argv = worker_argv()
    credentials = settings.bus.credentials_dir
    phases: list[list[WorkerSpec]] = []
    for group in groups:
        specs = [
            WorkerSpec(role, index, argv, _worker_env(role, index, engine, credentials))
            for role in WORKER_ROLES
            if role in group
            for index, engine in enumerate(
                engine for engine, n in config.engine_counts(role) for _ in range(n)
            )
        ]
        if specs:
            phases.append(specs)
    return NodePlan(phases)


def supervisor_config(settings: Settings) -> SupervisorConfig:
    d = settings.distributed
    return SupervisorConfig(
        log_dir=paths.log_dir(settings.home),
        run_dir=paths.run_dir(settings.home),
        name=paths.SUPERVISOR_NAME,
        node=d.node,
        heartbeat_s=d.heartbeat_s,
        start_timeout_s=d.start_timeout_s,
        restart_backoff_s=d.restart_backoff_s,
        restart_backoff_max_s=max(d.restart_backoff_max_s, d.restart_backoff_s),
        stop_timeout_s=d.stop_timeout_s,
    )


# --- preflight ------------------------------------------------------------------------------


async def preflight(settings: Settings, roles: Collection[str]) -> None:
    """Check, concurrently and each within ``[distributed] connect_timeout_s``, what the
    enabled ``roles`` need: NATS, Postgres, an external Temporal. Raises
    :class:`PreflightError` naming everything unreachable."""
    timeout = settings.distributed.connect_timeout_s
    checks = []
    if set(roles) & BUS_ROLES:
        checks.append(
            _check_nats(settings.bus.url, timeout, settings.bus.user, settings.bus.password())
        )
    if set(roles) & DATABASE_ROLES and is_postgres(settings):
        checks.append(_check_database(settings.database_url, timeout))
    address = settings.workflows.temporal_address
    if "agent" in roles and settings.workflows.engine == "temporal" and address:
        checks.append(_check_tcp("Temporal", "workflows.temporal_address", address, timeout))
    results = await asyncio.gather(*checks, return_exceptions=True)
    problems = []
    for result in results:
        if isinstance(result, PreflightError):
            problems.append(str(result))
        elif isinstance(result, BaseException):
            raise result
    if problems:
        raise PreflightError("; ".join(problems))


async def _check_nats(url: str, timeout: float, user: str, password: str) -> None:
    from roost.bus import create_bus
    from roost.protocol import RoostError

    bus = create_bus(
        "nats", url, client_name="roostd-preflight", connect_timeout=timeout, user=user,
        password=password,
    )  # fmt: skip
    # the client logs every failed attempt; the one error below says it all
    nats_log = logging.getLogger("roost.bus.nats")
    level = nats_log.level
    nats_log.setLevel(logging.ERROR)
    try:
        # NatsBus bounds its first connect itself; the outer bound is a guard against a hang
        await asyncio.wait_for(bus.connect(), timeout + 2.0)
    except (RoostError, TimeoutError) as exc:
        message = getattr(exc, "message", "") or f"cannot reach NATS at {url} within {timeout:g}s"
        raise PreflightError(f"{message} (bus.url)") from None
    finally:
        await bus.close()
        nats_log.setLevel(level)


async def _check_database(url: str, timeout: float) -> None:
    from sqlalchemy.engine import make_url

    shown = make_url(url).render_as_string(hide_password=True)
    try:
        await asyncio.wait_for(asyncio.to_thread(_connect_database, url, timeout), timeout + 2.0)
    except TimeoutError:
        raise PreflightError(f"cannot reach the database {shown} within {timeout:g}s") from None
    except ImportError as exc:
        raise PreflightError(
            f"cannot use the database {shown}: its driver is missing ({exc}); "
            "install roost[postgres]"
        ) from None
    except Exception as exc:  # the driver's own error types: report its first line
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise PreflightError(
            f"cannot reach the database {shown} within {timeout:g}s "
            f"({reason[0] if reason else type(exc).__name__}) (state.url)"
        ) from None


def _connect_database(url: str, timeout: float) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    # libpq's connect_timeout is whole seconds (and at least 2)
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"connect_timeout": max(2, math.ceil(timeout))}
    )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()


async def _check_tcp(what: str, key: str, address: str, timeout: float) -> None:
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except (OSError, ValueError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise PreflightError(
            f"cannot reach {what} at {address} within {timeout:g}s ({reason}) ({key})"
        ) from None
    writer.close()
    await writer.wait_closed()
