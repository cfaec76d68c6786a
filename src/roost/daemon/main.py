"""``roostd``: supervise this node's workers (``start``, the default), run one worker
(``worker``), or serve the platform services in one process (``serve``).

Exit codes: 0 after a clean stop; 1 when something failed at run time (an unreachable
NATS or database, a worker that never became ready, another roostd on the same home);
2 for configuration and usage errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import typer

from roost.config import ConfigError, Settings, load_settings
from roost.protocol import RoostError

log = logging.getLogger("roostd")

app = typer.Typer(
    name="roostd",
    help="The roost daemon: supervise this node's workers (default: start).",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"roostd: error: {message}", err=True)
    return typer.Exit(code)


def _load_settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None


# --- start: the supervisor ------------------------------------------------------------------


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        start()


@app.command()
def start() -> None:
    """Start this node's workers (the counts in distributed.workers) and supervise them
    until SIGTERM or Ctrl-C: phase by phase, restarting crashed ones, stopping them in
    reverse order. Status: `roost status`; worker logs: $ROOST_HOME/logs."""
    from roost.daemon import paths
    from roost.daemon._plan import (
        PlanError,
        PreflightError,
        plan_node,
        preflight,
        supervisor_config,
    )
    from roost.supervisor import AlreadyRunningError, StartupError, Supervisor, lock_holder

    settings = _load_settings()
    logging.basicConfig(
        level=settings.log.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # the supervisor's events (starts, crashes, restarts) are what roostd prints
    logging.getLogger("roost.supervisor").setLevel(min(logging.INFO, logging.getLogger().level))
    try:
        plan = plan_node(settings)
    except PlanError as exc:
        raise _fail(str(exc), 2) from None
    holder = lock_holder(paths.lock_path(settings.home))
    if holder is not None:
        who = f"pid {holder}" if holder else "another process"
        raise _fail(f"roostd is already running on {settings.home} ({who})", 1)

    async def run() -> None:
        await preflight(settings, plan.roles)
        await Supervisor(plan.phases, supervisor_config(settings)).run()

    try:
        asyncio.run(run())
    except (PreflightError, StartupError, AlreadyRunningError, OSError) as exc:
        raise _fail(str(exc), 1) from None
    except KeyboardInterrupt:  # Ctrl-C during the preflight, before the handlers exist
        raise _fail("interrupted", 130) from None


# --- worker: one role in this process -------------------------------------------------------


@app.command()
def worker(
    role: str = typer.Option(
        "", help="Role to run (default: $ROOST_WORKER_ROLE, as roostd start sets it)."
    ),
) -> None:
    """Run one worker of a role in this process until SIGTERM / Ctrl-C."""
    from roost.daemon.worker import run_worker

    raise typer.Exit(run_worker(role or None))


# --- serve: everything in one process -------------------------------------------------------


async def serve_services(
    settings: Settings, services: list[str], stop: asyncio.Event | None = None
) -> None:
    """Run ``services`` until ``stop`` is set (or SIGTERM/SIGINT arrives)."""
    from roost.platform import Platform

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    platform = await Platform.open(settings, start_services=False)
    try:
        await platform.start_services(services)
        print(
            f"roostd: serving {', '.join(services)} on {settings.bus.url}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        await platform.close()
        print("roostd: stopped", file=sys.stderr, flush=True)


@app.command()
def serve(
    services: str = typer.Option(
        "infer,embed,kv,vec,tool,agent", help="Comma-separated services to serve."
    ),
) -> None:
    """Serve platform services on the NATS bus in this one process (no supervisor) until
    SIGTERM / Ctrl-C: the simple set-up, for one machine."""
    from roost.platform import LOCAL_SERVICES

    settings = _load_settings()
    logging.basicConfig(level=settings.log.level, format="%(levelname)s %(name)s: %(message)s")
    names = [s.strip() for s in services.split(",") if s.strip()]
    unknown = [s for s in names if s not in LOCAL_SERVICES]
    if unknown:
        raise _fail(
            f"unknown service(s) {', '.join(unknown)} (known: {', '.join(LOCAL_SERVICES)})", 2
        )
    if settings.bus.backend != "nats":
        raise _fail(
            'roostd serves other processes, so it needs bus.backend = "nats" '
            "(set ROOST_BUS__BACKEND=nats and ROOST_BUS__URL)",
            2,
        )
    try:
        asyncio.run(serve_services(settings, names))
    except (RoostError, OSError) as exc:
        raise _fail(str(exc), 1) from None


def main() -> None:
    app()
