"""``roost session``: list, get, fork, promote."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from roost.cli._common import console, run_async, with_platform

if TYPE_CHECKING:
    from roost.platform import PlatformAPI

app = typer.Typer(help="Inspect, fork and promote sessions.", no_args_is_help=True)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _summary(kind: str, content: dict[str, Any]) -> str:
    """A one-line description of a DAG node."""
    if kind == "invoke":
        return f"{content.get('agent', '')} <- {_short(content.get('input'))}"
    if kind == "request":
        return f"{content.get('service')}.{content.get('op')} {_short(content.get('body'))}"
    if kind == "response":
        where = f"{content.get('service', '')}.{content.get('op', '')}"
        if content.get("ok", True):
            return f"{where} ok {_short(content.get('body'))}"
        return f"{where} error: {(content.get('error') or {}).get('message', '')}"
    if kind == "complete":
        if content.get("ok", True):
            return f"-> {_short(content.get('output'))}"
        return f"failed: {(content.get('error') or {}).get('message', '')}"
    if kind == "event":
        return f"{content.get('type')}: {_short(content.get('data'))}"
    return _short(content)


def _short(value: Any, width: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("list")
@run_async
async def list_sessions(
    agent: str | None = typer.Option(None, "--agent", "-a", help="Only this agent's sessions."),
    limit: int = typer.Option(50, help="Most sessions to show (newest first)."),
) -> None:
    """List sessions, newest first."""

    async def work(platform: PlatformAPI) -> None:
        table = Table()
        # names are what users type next: never cut them; the long id folds instead
        table.add_column("name", no_wrap=True)
        table.add_column("agent")
        table.add_column("main branch")
        table.add_column("created", no_wrap=True)
        table.add_column("id", overflow="fold")
        for session in await platform.list_sessions(agent=agent, limit=limit):
            table.add_row(
                session.name,
                session.agent,
                session.main_branch,
                _when(session.created_at),
                session.id,
            )
        console.print(table)

    await with_platform(work)


@app.command("get")
@run_async
async def get_session(
    session: str = typer.Argument(..., help="Session name or id."),
    branch: str | None = typer.Option(None, "-b", "--branch", help="Branch (default: main)."),
    full: bool = typer.Option(False, "--json", help="Print the nodes as JSON."),
) -> None:
    """Show a session's branches and the recorded nodes of one branch."""

    async def work(platform: PlatformAPI) -> None:
        sess = await platform.get_session(session)
        nodes = await platform.session_nodes(sess.id, branch or sess.main_branch)
        if full:
            console.print_json(
                json.dumps(
                    [
                        {"id": n.id, "parent": n.parent, "kind": n.kind, "content": n.content}
                        for n in nodes
                    ]
                )
            )
            return
        console.print(f"[bold]{sess.name}[/] ({sess.agent}) id {sess.id}")
        branches = await platform.list_branches(sess.id)
        console.print(
            "branches: "
            + ", ".join(
                f"[bold]{b.name}[/]" if b.name == sess.main_branch else b.name for b in branches
            )
        )
        table = Table("#", "node", "kind", "summary", title=f"branch {branch or sess.main_branch}")
        for i, node in enumerate(nodes, 1):
            table.add_row(str(i), node.id[:12], node.kind, _summary(node.kind, node.content))
        console.print(table)

    await with_platform(work)


@app.command("fork")
@run_async
async def fork(
    session: str = typer.Argument(..., help="Session name or id."),
    from_node: str = typer.Option(..., "--from", help="Node id (or unique prefix) to fork from."),
    branch: str | None = typer.Option(None, "-b", "--branch", help="Name of the new branch."),
) -> None:
    """Start a new branch at an earlier node; runs on it see the KV state of that node."""

    async def work(platform: PlatformAPI) -> None:
        new = await platform.fork(session, from_node, branch)
        console.print(
            f"forked branch [bold]{new.name}[/] from node {(new.head or '')[:12]}; "
            f"run on it with: roost agent run AGENT -s {session} -b {new.name}"
        )

    await with_platform(work)


@app.command("promote")
@run_async
async def promote(
    session: str = typer.Argument(..., help="Session name or id."),
    branch: str = typer.Argument(..., help="Branch to make the session's main line."),
) -> None:
    """Make a branch the session's main branch (new runs continue it by default)."""

    async def work(platform: PlatformAPI) -> None:
        await platform.promote(session, branch)
        console.print(f"branch [bold]{branch}[/] is now the main branch of {session}")

    await with_platform(work)
