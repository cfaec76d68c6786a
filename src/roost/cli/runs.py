"""``roost run``: list, get, cancel and answer agent runs."""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from roost.cli._common import console, run_async, with_platform
from roost.protocol import RoostError

if TYPE_CHECKING:
    from roost.platform import PlatformAPI

app = typer.Typer(help="Inspect and steer agent runs.", no_args_is_help=True)

_STYLE = {
    "running": "yellow",
    "completed": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "dim",
}


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def _status(info: Any) -> str:
    label = "waiting for an answer" if info.question else info.status
    return f"[{_STYLE.get(info.status, 'white')}]{label}[/]"


@app.command("list")
@run_async
async def list_runs(limit: int = typer.Option(20, help="How many runs, newest first.")) -> None:
    """List runs, newest first."""

    async def work(platform: PlatformAPI) -> None:
        table = Table()
        table.add_column("run", no_wrap=True)  # what `run get|answer|cancel` take
        table.add_column("agent")
        table.add_column("session", no_wrap=True)
        table.add_column("status")
        table.add_column("started")
        table.add_column("ended")
        for info in await platform.harness.list_runs(limit=limit):
            session = info.session
            with contextlib.suppress(RoostError):  # a session deleted since: show its id
                session = (await platform.get_session(info.session)).name
            table.add_row(
                info.id,
                info.agent,
                session,
                _status(info),
                _when(info.started_at),
                _when(info.closed_at),
            )
        console.print(table)

    await with_platform(work, runs=True)


@app.command("get")
@run_async
async def get_run(
    run: str = typer.Argument(..., help="Run id (printed by `roost agent run`)."),
    wait: bool = typer.Option(False, help="Wait for the run to finish and print its output."),
    timeout: float = typer.Option(600.0, help="Most seconds to wait with --wait."),
    as_json: bool = typer.Option(False, "--json", help="Print the run as JSON."),
) -> None:
    """Show a run: status, question it waits on, and (once done) its output."""

    async def work(platform: PlatformAPI) -> None:
        info = await platform.harness.get_run(run)
        complete = None
        if info.status != "running" or wait:
            complete = await platform.harness.wait(run, session=info.session, timeout_s=timeout)
            info = await platform.harness.get_run(run)
        if as_json:
            data: dict[str, Any] = {
                "id": info.id,
                "agent": info.agent,
                "session": info.session,
                "branch": info.branch,
                "status": info.status,
                "question": info.question,
                "started_at": info.started_at,
                "closed_at": info.closed_at,
            }
            if complete is not None:
                data["output"] = complete.output
                data["error"] = complete.error.message if complete.error else None
            console.print_json(json.dumps(data))
            return
        console.print(f"[bold]run {info.id}[/] · {info.agent} · {_status(info)}")
        console.print(f"session {info.session} · branch {info.branch}")
        console.print(f"started {_when(info.started_at)}  ended {_when(info.closed_at)}")
        if info.question:
            console.print(f"[bold yellow]?[/] {info.question}", highlight=False)
            console.print(f"[dim]answer with: roost run answer {info.id} TEXT[/]")
        if complete is not None:
            if complete.ok:
                output = complete.output
                console.print(output if isinstance(output, str) else json.dumps(output))
            elif complete.error is not None:
                console.print(f"[red]error:[/] {complete.error.message}", highlight=False)

    await with_platform(work, worker=wait, runs=True)


@app.command("cancel")
@run_async
async def cancel_run(run: str = typer.Argument(..., help="Run id.")) -> None:
    """Cancel a running run (it records its cancellation and stops)."""

    async def work(platform: PlatformAPI) -> None:
        await platform.harness.cancel(run)
        console.print(f"cancelling {run}")

    await with_platform(work, runs=True)


@app.command("answer")
@run_async
async def answer_run(
    run: str = typer.Argument(..., help="Run id."),
    text: str = typer.Argument(..., help="The answer to the run's question."),
) -> None:
    """Answer the question a run asked (``ctx.ask``); the run then goes on."""

    async def work(platform: PlatformAPI) -> None:
        await platform.harness.answer(run, text)
        console.print(f"answered {run}")

    await with_platform(work, runs=True)
