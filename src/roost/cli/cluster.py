"""``roost cluster credentials``: the gRPC trust of a multi-node deployment (a CA, node
certificates, the cluster key and node credentials), as ``roost dev up`` makes for the dev
cluster. docs/security.md says where each file goes."""

from __future__ import annotations

from pathlib import Path

import typer

from roost.cli._common import err_console, fail

app = typer.Typer(help="Set up a multi-node deployment.")


@app.command()
def credentials(
    directory: Path = typer.Argument(..., help="Where to write (created, mode 0700)."),
    node: list[str] = typer.Option(
        ..., "--node", "-n", help="A node (or client) to make a certificate and credential for."
    ),
    host: list[str] = typer.Option(
        [], "--host", help="A host name or IP the nodes' services are reached at (repeat)."
    ),
    days: int = typer.Option(365, "--days", min=1, help="How long the certificates last."),
    no_mtls: bool = typer.Option(
        False, "--no-mtls", help="Servers do not require client certificates."
    ),
) -> None:
    """Make (or extend) a deployment's CA and cluster key, and a certificate and credential
    per node, then print each node's [distributed.security] table. The CA and cluster key
    are made once: running it again for a new node keeps the others valid."""
    from roost.rpc import LOCAL_HOSTS, write_cluster_credentials

    try:
        configs = write_cluster_credentials(
            directory, node, hosts=[*LOCAL_HOSTS, *host], days=days, mtls=not no_mtls
        )
    except (OSError, ValueError) as exc:
        fail(str(exc))
    for name, config in configs.items():
        print(f"# node {name}: its config.toml")
        print("[distributed.security]")
        for key, value in config.model_dump(exclude_defaults=True).items():
            shown = ("true" if value else "false") if isinstance(value, bool) else f'"{value}"'
            print(f"{key} = {shown}")
        print()
    err_console.print(
        f"wrote {directory}: copy ca.pem, cluster.key and each node's files to that node "
        "(clients, in client.toml's [security], get no cluster.key); keep ca-key.pem here",
        highlight=False,
        markup=False,
    )
