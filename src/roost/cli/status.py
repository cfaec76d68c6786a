"""``roost status``: the workers ``roostd`` supervises on this node, from its status file."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from roost.cli._common import console, fail, settings

if TYPE_CHECKING:
    from roost.supervisor import WorkerSnapshot

_STYLE = {
    "ready": "green",
    "starting": "yellow",
    "backoff": "yellow",
    "pending": "dim",
    "stopping": "dim",
    "stopped": "dim",
    "unhealthy": "red",
    "failed": "red",
}


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _last_exit(worker: WorkerSnapshot, now: float) -> str:
    last = worker.last_exit
    if last is None:
        return ""
    text = last.description
    if last.reason:
        text += f" ({last.reason})"
    if last.at:
        text += f", {_duration(now - last.at)} ago"
    return text


def status(
    as_json: bool = typer.Option(False, "--json", help="Print the status snapshot as JSON."),
    cluster: bool = typer.Option(
        False,
        "--cluster",
        help="Show every node's workers as the registry knows them (live or dead).",
    ),
) -> None:
    """Show roostd's workers on this node: role, pid, state, restarts, uptime, last exit.
    Exits 1 when roostd is not running. With --cluster: the workers of every node, from
    the deployment's registry."""
    import msgspec

    from roost.daemon import paths
    from roost.supervisor import read_status

    if cluster:
        _cluster_status(as_json)
        return

    home = settings().home
    found = read_status(paths.status_path(home), paths.lock_path(home))
    if not found.running or found.snapshot is None:
        message = (
            f"roostd runs, but its status cannot be read: {found.reason}"
            if found.running
            else f"roostd is not running ({found.reason})"
        )
        if as_json:
            typer.echo(json.dumps({"running": False, "reason": message}))
        else:
            console.print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    snapshot = found.snapshot
    if as_json:
        # the file's own keys (as `roost status --json` always showed them)
        fields: dict[str, Any] = msgspec.to_builtins(snapshot)
        typer.echo(json.dumps({"running": True, **fields}, indent=2))
        return
    now = time.time()
    workers = snapshot.workers
    ready = sum(1 for w in workers if w.state == "ready")
    up = _duration(now - (snapshot.started_at or now))
    console.print(
        f"roostd pid {snapshot.pid} on {snapshot.node}: {snapshot.state}, "
        f"{ready}/{len(workers)} workers ready, up {up}; logs in {snapshot.log_dir}",
        highlight=False,
        soft_wrap=True,
    )
    table = Table()
    table.add_column("role", no_wrap=True)
    table.add_column("index", justify="right")
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("restarts", justify="right")
    table.add_column("uptime", no_wrap=True)
    table.add_column("last exit")
    for worker in workers:
        state = worker.state
        started = worker.started_at
        uptime = _duration(now - started) if worker.pid and started else ""
        table.add_row(
            worker.role,
            str(worker.index),
            str(worker.pid or ""),
            f"[{_STYLE.get(state, 'white')}]{state}[/]",
            str(worker.restarts),
            uptime,
            _last_exit(worker, now),
        )
    console.print(table)


def _cluster_status(as_json: bool) -> None:
    """The registry's view: every registered worker of every node, live or dead."""
    import asyncio

    from roost.config import ConfigError, load_client_settings
    from roost.protocol import RoostError
    from roost.rpc import RemoteRegistryStore, RpcSecurity

    config = settings()
    try:
        client = load_client_settings()
    except ConfigError as exc:
        fail(str(exc))
    address = client.address("registry") if client.remote else config.distributed.registry
    ttl = config.distributed.worker_ttl_s

    async def fetch() -> list[Any]:
        security = RpcSecurity.load(
            client.security if client.remote else config.distributed.security
        )
        async with RemoteRegistryStore(
            address, timeout_s=client.timeout_s, security=security
        ) as registry:
            return await registry.list_workers()

    try:
        workers = asyncio.run(fetch())
    except RoostError as exc:
        fail(str(exc))
    now = time.time()
    rows = [
        {
            "id": w.id,
            "node": w.node,
            "role": w.role,
            "pid": w.pid,
            "address": w.address,
            "capabilities": w.capabilities,
            "heartbeat_age_s": round(now - w.heartbeat_at, 1),
            "live": now - w.heartbeat_at <= ttl,
            "uptime_s": round(now - w.started_at, 1),
        }
        for w in workers
    ]
    if as_json:
        typer.echo(json.dumps({"registry": address, "workers": rows}, indent=2))
        return
    live = sum(1 for row in rows if row["live"])
    nodes = len({row["node"] for row in rows})
    console.print(
        f"registry {address}: {live}/{len(rows)} workers live on {nodes} node(s)",
        highlight=False,
    )
    table = Table()
    for column in ("node", "worker", "pid", "state", "heartbeat", "uptime", "serves"):
        table.add_column(column, no_wrap=column != "serves")
    for row in rows:
        caps = row["capabilities"]
        serves = ", ".join(caps.get("services", [])) or str(caps.get("grpc", ""))
        if caps.get("engines"):
            serves += f" ({', '.join(caps['engines'])})"
        state = "[green]live[/]" if row["live"] else "[red]dead[/]"
        table.add_row(
            str(row["node"]),
            str(row["id"]).split("/", 1)[-1],
            str(row["pid"]),
            state,
            f"{row['heartbeat_age_s']:.0f}s ago",
            _duration(row["uptime_s"]),
            serves,
        )
    console.print(table)
