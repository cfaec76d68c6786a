"""The ``roost`` command line."""

from __future__ import annotations

import typer

from roost import __version__
from roost.cli import (
    agents,
    auth,
    cluster,
    dev,
    doctor,
    models,
    runs,
    secrets,
    server,
    sessions,
    status,
    temporal,
    tools_daemon,
    worker,
)

app = typer.Typer(
    name="roost",
    help="Roost: run AI agents on a laptop or a cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(agents.app, name="agent")
app.add_typer(sessions.app, name="session")
app.add_typer(models.app, name="model")
app.add_typer(secrets.app, name="secret")
app.add_typer(runs.app, name="run")
app.add_typer(temporal.app, name="temporal")
app.add_typer(dev.app, name="dev")
app.add_typer(server.app, name="server")
app.add_typer(auth.app, name="auth")
app.add_typer(auth.tokens, name="token")
app.add_typer(cluster.app, name="cluster")
app.add_typer(tools_daemon.app, name="daemon")
app.command("worker")(worker.worker)
app.command("status")(status.status)
app.command("doctor")(doctor.doctor)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"roost {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """Roost: run AI agents on a laptop or a cluster."""


def main() -> None:
    app()
