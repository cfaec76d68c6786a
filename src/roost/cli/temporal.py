"""``roost temporal``: the embedded Temporal server of local mode."""

from __future__ import annotations

import time

import typer

from roost.cli._common import console, settings

app = typer.Typer(help="The embedded Temporal server (local mode).", no_args_is_help=True)


@app.command("status")
def status() -> None:
    """Show whether the embedded server runs, where, and since when."""
    from roost.workflows import embedded_temporal_status

    config = settings()
    if config.workflows.temporal_address:
        console.print(f"using external Temporal at {config.workflows.temporal_address}")
        return
    found = embedded_temporal_status(config.home)
    if found is None or not found.alive:
        console.print("embedded Temporal is not running (roost starts it when needed)")
        raise typer.Exit(1)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(found.started_at))
    console.print(
        f"embedded Temporal at {found.address} (pid {found.pid}, namespace "
        f"{found.namespace!r}, since {started}); log: {found.log_path}",
        highlight=False,
    )


@app.command("stop")
def stop() -> None:
    """Stop the embedded server (runs are kept; the next roost command restarts it)."""
    from roost.workflows import stop_embedded_temporal

    if stop_embedded_temporal(settings().home):
        console.print("stopped the embedded Temporal server")
    else:
        console.print("the embedded Temporal server was not running")
