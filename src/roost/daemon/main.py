"""``roostd``: serve roost's platform services on the NATS bus.

In this release ``roostd`` runs the platform services (inference, embedding, KV, vectors,
tools, agent calls) in one process on the configured NATS bus, so that ``roost`` clients
configured with the same bus use them instead of starting their own. The multi-role
supervisor of distributed mode builds on this entry point.
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

app = typer.Typer(name="roostd", add_completion=False, pretty_exceptions_enable=False)


async def serve(settings: Settings, services: list[str], stop: asyncio.Event | None = None) -> None:
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
def run(
    services: str = typer.Option(
        "infer,embed,kv,vec,tool,agent", help="Comma-separated services to serve."
    ),
) -> None:
    """Serve platform services on the NATS bus until SIGTERM / SIGINT."""
    from roost.platform import LOCAL_SERVICES

    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"roostd: error: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(level=settings.log.level, format="%(levelname)s %(name)s: %(message)s")
    names = [s.strip() for s in services.split(",") if s.strip()]
    unknown = [s for s in names if s not in LOCAL_SERVICES]
    if unknown:
        typer.echo(
            f"roostd: error: unknown service(s) {', '.join(unknown)} "
            f"(known: {', '.join(LOCAL_SERVICES)})",
            err=True,
        )
        raise typer.Exit(2)
    if settings.bus.backend != "nats":
        typer.echo(
            'roostd: error: roostd serves other processes, so it needs bus.backend = "nats" '
            "(set ROOST_BUS__BACKEND=nats and ROOST_BUS__URL)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        asyncio.run(serve(settings, names))
    except (RoostError, OSError) as exc:
        typer.echo(f"roostd: error: {exc}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()
