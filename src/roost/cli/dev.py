"""``roost dev``: a local dev cluster (NATS, Postgres, Temporal and a roostd node with every
role) for trying distributed mode on one machine. The logic is
:mod:`roost.devcluster`; this module is its command line."""

from __future__ import annotations

import json
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING

import typer

from roost.cli._common import console, err_console, fail, settings

if TYPE_CHECKING:
    from rich.status import Status

    from roost.devcluster import DevCluster
    from roost.supervisor import WorkerSnapshot

app = typer.Typer(
    help="A local dev cluster: distributed mode on this machine.", no_args_is_help=True
)


class _ConsoleProgress:
    """A spinner while a step runs, a line when it is done (see
    :class:`roost.devcluster.Progress`)."""

    def __init__(self) -> None:
        self._status: Status | None = None

    def step(self, what: str) -> None:
        if self._status is None:
            self._status = console.status(what, spinner="dots")
            self._status.start()
        else:
            self._status.update(what)

    def update(self, detail: str) -> None:
        self.step(detail)

    def done(self, message: str) -> None:
        self.close()
        console.print(f"[green]✓[/] {message}", highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.close()
        console.print(f"[yellow]![/] {message}", highlight=False, soft_wrap=True)

    def failed(self, message: str) -> None:
        self.close()
        if message == "interrupted":
            console.print("\ninterrupted: stopping the dev cluster", highlight=False)
        else:
            err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def _parse_workers(values: list[str]) -> dict[str, int]:
    from roost.config import WORKER_ROLES

    counts: dict[str, int] = {}
    for value in values:
        role, sep, count = value.partition("=")
        role = role.strip()
        if not sep or not count.strip().isdigit():
            fail(f"--workers {value!r}: expected ROLE=N, e.g. --workers inference=1")
        if role not in WORKER_ROLES:
            fail(f"--workers {value!r}: unknown role {role!r} (roles: {', '.join(WORKER_ROLES)})")
        counts[role] = int(count)
    return counts


def _summary(cluster: DevCluster) -> None:
    paths = cluster.paths
    rows = [
        ("NATS", cluster.nats_url),
        ("Postgres", cluster.database_url),
        ("Temporal", cluster.temporal_address),
        *cluster.client_addresses.items(),
    ]
    console.print(f"\n[bold]roost dev cluster ready[/] (home {paths.home})", highlight=False)
    for name, address in rows:
        console.print(f"  {name:<9} {address}", highlight=False, soft_wrap=True)
    if cluster.client_written:
        console.print(
            f"`roost` commands in another terminal use it through {cluster.client_config};"
            " elsewhere (another ROOST_HOME, another machine user) set:",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print("Select it in another terminal with:", highlight=False)
    exports = " ".join(f"{k}={v}" for k, v in cluster.client_env().items())
    console.print(f"  export {exports}", highlight=False, soft_wrap=True)
    console.print(
        f"Logs: {paths.logs} (NATS, Postgres, Temporal, roostd), {paths.node_home / 'logs'} "
        f"(workers); worker status: ROOST_HOME={paths.node_home} roost status",
        highlight=False,
        soft_wrap=True,
    )
    console.print("Ctrl-C to stop.", highlight=False)


@app.command("up")
def up(
    workers: list[str] = typer.Option(
        [],
        "--workers",
        "-w",
        metavar="ROLE=N",
        help="Worker processes for a role (repeatable), e.g. --workers inference=1. "
        "Default: 1 per role, 2 agent and 2 inference workers.",
    ),
    timeout: float = typer.Option(
        180.0, "--timeout", min=1.0, help="Seconds roostd may take to have every worker ready."
    ),
) -> None:
    """Start a local dev cluster; it runs in the foreground until Ctrl-C.

    NATS, Postgres and Temporal from their wheels and roostd with every role, on free
    loopback ports, with their data under $ROOST_HOME/dev (kept for the next start). Writes
    $ROOST_HOME/client.toml so `roost` commands use the cluster, and removes it on stop."""
    from roost.config import client_config_path
    from roost.devcluster import DevCluster, DevClusterError

    home = settings().home
    counts = _parse_workers(workers)
    progress = _ConsoleProgress()
    try:
        cluster = DevCluster(
            home,
            workers=counts,
            client_config=client_config_path(),
            ready_timeout_s=timeout,
            progress=progress,
        )
    except ValueError as exc:
        fail(str(exc))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if cluster.state in ("idle", "starting", "running"):
            raise KeyboardInterrupt
        cluster.hurry()  # a second Ctrl-C while stopping: stop faster

    # SIGTERM (`roost dev down`, a service manager) stops the cluster as Ctrl-C does
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        try:
            cluster.start()
            progress.close()
            _summary(cluster)
            problem = cluster.wait()
            progress.close()
            err_console.print(
                f"[bold red]error:[/] {problem}; stopping the dev cluster",
                highlight=False,
                soft_wrap=True,
            )
            code = 1
        except DevClusterError:  # reported by progress.failed; what was started is stopped
            code = 1
        except KeyboardInterrupt:
            progress.close()
            if cluster.state == "running":  # else start() said so (and stopped everything)
                console.print("\nstopping the dev cluster", highlight=False)
        try:
            cluster.stop()
        except DevClusterError as exc:
            progress.close()
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            code = 1
    finally:
        progress.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code == 0:
        console.print("dev cluster stopped", highlight=False)
    raise typer.Exit(code)


def _uptime(since: object) -> str:
    if not isinstance(since, (int, float)):
        return "?"
    seconds = int(max(time.time() - since, 0))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


@app.command("status")
def status(
    as_json: bool = typer.Option(False, "--json", help="Print cluster.json and liveness as JSON."),
) -> None:
    """Show whether a dev cluster runs for this ROOST_HOME.

    Its addresses, workers and logs; exits 1 when none runs."""
    from pathlib import Path

    import msgspec

    from roost.daemon import paths
    from roost.devcluster import dev_cluster_status
    from roost.supervisor import read_status

    home = settings().home
    found = dev_cluster_status(home)
    state = found.state
    workers: list[WorkerSnapshot] = []
    if found.running and state is not None and state.node_home:
        node = Path(state.node_home)
        node_status = read_status(paths.status_path(node), paths.lock_path(node))
        if node_status.running and node_status.snapshot is not None:
            workers = node_status.snapshot.workers
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "running": found.running,
                    "pid": found.pid,
                    # a running cluster whose cluster.json cannot be read says why here
                    "reason": found.reason or found.problem,
                    "leftovers": found.leftovers,
                    # the files' own keys, as this command always showed them
                    "cluster": msgspec.to_builtins(state) if state is not None else None,
                    "workers": msgspec.to_builtins(workers),
                },
                indent=2,
            )
        )
        raise typer.Exit(0 if found.running else 1)
    if not found.running:
        message = f"no dev cluster runs for {home} ({found.reason})"
        if found.leftovers:
            message += "; `roost dev down` stops them"
        console.print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if state is None:
        console.print(
            f"dev cluster running for {home} (pid {found.pid}); its state cannot be shown: "
            f"{found.problem or 'no cluster.json yet'}",
            highlight=False,
            soft_wrap=True,
        )
        return
    ready = sum(1 for w in workers if w.state == "ready")
    console.print(
        f"dev cluster {state.state} for {home} (pid {found.pid}, up "
        f"{_uptime(state.started_at)}): {ready}/{len(workers)} workers ready",
        highlight=False,
        soft_wrap=True,
    )
    for name, address in state.addresses.items():
        console.print(f"  {name:<9} {address}", highlight=False, soft_wrap=True)
    if state.client_config:
        console.print(f"client config: {state.client_config}", highlight=False)
    console.print(
        f"logs: {state.logs} (servers, roostd), {state.worker_logs} (workers)",
        highlight=False,
        soft_wrap=True,
    )


@app.command("down")
def down(
    timeout: float = typer.Option(
        90.0, "--timeout", min=1.0, help="Seconds to wait for the cluster to stop."
    ),
) -> None:
    """Stop the dev cluster of this ROOST_HOME and wait for it.

    SIGTERM to its `roost dev up`, which stops everything in order; with no such process,
    stops what a killed one left running."""
    from roost.devcluster import DevClusterError, stop_dev_cluster

    home = settings().home
    try:
        with err_console.status("stopping the dev cluster", spinner="dots"):
            done = stop_dev_cluster(home, timeout=timeout)
    except DevClusterError as exc:
        fail(str(exc))
    console.print(done or f"no dev cluster runs for {home}", highlight=False, soft_wrap=True)
