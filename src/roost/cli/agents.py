"""``roost agent``: deploy, run, list, get, delete."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from roost.cli._common import console, err_console, fail, run_async, with_platform

if TYPE_CHECKING:
    from roost.platform import PlatformAPI

app = typer.Typer(help="Deploy and run agents.", no_args_is_help=True)


@app.command("deploy")
@run_async
async def deploy(
    path: Path = typer.Argument(..., help="Agent folder (with agent.toml) or its agent.toml."),
) -> None:
    """Validate an agent against the registry and deploy it (a new version).

    Dependencies the folder declares (requirements.txt, pyproject.toml, package.json with
    package-lock.json) are installed first; their output is shown as it happens."""

    def show(line: str) -> None:
        err_console.print(line, style="dim", markup=False, highlight=False, soft_wrap=True)

    async def work(platform: PlatformAPI) -> None:
        record = await platform.deploy(path, on_output=show)
        console.print(
            f"deployed [bold]{record.name}[/] version {record.version} "
            f"({record.manifest['runtime']} runtime)"
        )

    await with_platform(work)


def _parse_input(prompt: str | None, input_json: str | None) -> Any:
    if prompt is not None and input_json is not None:
        fail("give either --prompt or --input, not both")
    if input_json is not None:
        try:
            return json.loads(input_json)
        except json.JSONDecodeError as exc:
            fail(f"--input is not valid JSON: {exc}")
    return prompt


def _show_output(output: Any) -> None:
    if isinstance(output, str):
        console.print(output, markup=False, highlight=False)
    else:
        console.print_json(json.dumps(output))


@app.command("run")
@run_async
async def run(
    name: str = typer.Argument(..., help="Deployed agent name."),
    prompt: str | None = typer.Option(None, "-p", "--prompt", help="One-shot input text."),
    input_json: str | None = typer.Option(None, "--input", help="One-shot input as JSON."),
    session: str | None = typer.Option(None, "-s", "--session", help="Continue this session."),
    branch: str | None = typer.Option(None, "-b", "--branch", help="Run on this branch."),
    timeout: float | None = typer.Option(None, help="Run timeout in seconds."),
    stream: bool = typer.Option(True, help="Print model tokens as they arrive."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the result as one JSON object (run, session, output)."
    ),
) -> None:
    """Run an agent once (-p / --input) or interactively (no input: a prompt loop)."""
    if branch is not None and session is None:
        fail("--branch needs --session: branches belong to a session")
    one_shot = _parse_input(prompt, input_json)
    if as_json and one_shot is None:
        fail("--json needs an input (-p or --input): it prints one run's result")

    async def work(platform: PlatformAPI) -> None:
        nonlocal session
        if one_shot is not None:
            ok = await _run_once(
                platform, name, one_shot, session, branch, timeout, stream and not as_json,
                as_json=as_json,
            )  # fmt: skip
            if not ok:
                raise typer.Exit(1)
            return
        err_console.print(f"[dim]interactive session with {name}; Ctrl-D or 'exit' to leave[/]")
        while True:
            try:
                line = console.input("[bold cyan]you>[/] ")
            except EOFError:
                err_console.print()
                return
            if line.strip() in {"exit", "quit"}:
                return
            if not line.strip():
                continue
            result = await _run_once(platform, name, line, session, branch, timeout, stream, True)
            session = session or (result if isinstance(result, str) else None)

    await with_platform(work, worker=True, status="starting roost")


async def _run_once(
    platform: PlatformAPI,
    name: str,
    value: Any,
    session: str | None,
    branch: str | None,
    timeout: float | None,
    stream: bool,
    interactive: bool = False,
    *,
    as_json: bool = False,
) -> Any:
    from roost.protocol import EventMessage

    streamed: list[str] = []
    status = err_console.status(f"running {name}", spinner="dots")
    status.start()

    def on_event(event: EventMessage) -> None:
        if event.type == "question":
            status.stop()
            question = str(event.data.get("question", ""))
            err_console.print(f"[bold yellow]?[/] {question}", highlight=False)
            if sys.stdin.isatty():
                asyncio.get_running_loop().create_task(
                    _answer_from_terminal(platform, event.correlation_id)
                )
            else:
                err_console.print(
                    f"[dim]answer with: roost run answer {event.correlation_id} TEXT[/]"
                )
        elif event.type == "answer":
            err_console.print(f"[dim]answered: {event.data.get('answer', '')}[/]")
            status.start()
        elif event.type == "token" and stream:
            if not streamed:
                status.stop()
            text = str(event.data.get("text", ""))
            streamed.append(text)
            sys.stdout.write(text)
            sys.stdout.flush()
        elif event.type in ("progress", "step"):
            message = str(event.data.get("message", ""))
            if streamed:
                sys.stdout.write("\n")
                streamed.clear()
            status.update(f"{name}: {message}")
            status.start()

    started = time.perf_counter()
    try:
        result = await platform.run(
            name, value, session=session, branch=branch, timeout_s=timeout, on_event=on_event
        )
    finally:
        status.stop()
    elapsed = time.perf_counter() - started
    complete = result.complete
    if as_json:
        usage = complete.usage
        data = {
            "run": complete.correlation_id,
            "agent": name,
            "session": result.session.name,
            "session_id": result.session.id,
            "branch": result.branch,
            "ok": complete.ok,
            "output": complete.output,
            "error": {"code": complete.error.code, "message": complete.error.message}
            if complete.error
            else None,
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
            "seconds": round(elapsed, 3),
        }
        sys.stdout.write(json.dumps(data) + "\n")
        return complete.ok
    if streamed:
        sys.stdout.write("\n")
        # the streamed text was the answer; print structured outputs in full
        if not isinstance(complete.output, str):
            _show_output(complete.output)
    elif complete.ok:
        _show_output(complete.output)
    usage = complete.usage
    summary = (
        f"run {complete.correlation_id} · session {result.session.name} · branch {result.branch} · "
        f"{usage.total_tokens} tokens · {elapsed:.1f}s"
    )
    if not complete.ok:
        error = complete.error
        err_console.print(f"[bold red]error:[/] {error.message if error else 'run failed'}")
        err_console.print(f"[dim]{summary}[/]")
        return False
    err_console.print(f"[dim]{summary}[/]")
    return result.session.name if interactive else True


async def _answer_from_terminal(platform: PlatformAPI, run_id: str) -> None:
    answer = await asyncio.to_thread(console.input, "[bold cyan]answer>[/] ")
    await platform.harness.answer(run_id, answer)


@app.command("list")
@run_async
async def list_agents(
    as_json: bool = typer.Option(False, "--json", help="Print the agents as JSON."),
) -> None:
    """List deployed agents."""

    async def work(platform: PlatformAPI) -> None:
        if as_json:
            records = await platform.list_agents()
            rows = [
                {
                    "name": r.name,
                    "version": r.version,
                    "runtime": r.manifest.get("runtime", ""),
                    "description": r.manifest.get("description", ""),
                    "deployed_at": r.deployed_at,
                }
                for r in records
            ]
            sys.stdout.write(json.dumps(rows) + "\n")
            return
        table = Table("name", "version", "runtime", "description", "deployed")
        for record in await platform.list_agents():
            table.add_row(
                record.name,
                str(record.version),
                record.manifest.get("runtime", ""),
                record.manifest.get("description", ""),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(record.deployed_at)),
            )
        console.print(table)

    await with_platform(work)


@app.command("get")
@run_async
async def get_agent(name: str) -> None:
    """Show a deployed agent's manifest and location."""

    async def work(platform: PlatformAPI) -> None:
        record = await platform.get_agent(name)
        console.print(f"[bold]{record.name}[/] version {record.version} — {record.path}")
        console.print_json(json.dumps(record.manifest))

    await with_platform(work)


@app.command("delete")
@run_async
async def delete_agent(name: str) -> None:
    """Delete a deployed agent (all versions; its sessions stay)."""

    async def work(platform: PlatformAPI) -> None:
        await platform.delete_agent(name)
        console.print(f"deleted {name}")

    await with_platform(work)
