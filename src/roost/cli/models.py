"""``roost model``: add, list, available, remove."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from roost.cli._common import console, err_console, run_async, with_platform

if TYPE_CHECKING:
    from roost.platform import PlatformAPI

app = typer.Typer(help="Register and list models.", no_args_is_help=True)


@app.command("add")
@run_async
async def add(
    name: str = typer.Argument(..., help="Name agents use for the model."),
    engine: str = typer.Option(
        ..., help="llama-cpp, sentence-transformers, ollama or openai (any OpenAI-compatible API)."
    ),
    target: str = typer.Option(..., help="The engine's model id (or a GGUF / model path)."),
    kind: str = typer.Option("chat", help="chat or embedding."),
    base_url: str = typer.Option("", help="Engine URL, e.g. http://127.0.0.1:11434."),
    api_key_secret: str = typer.Option("", help="Name of the secret holding the API key."),
    dimension: int = typer.Option(0, help="Embedding size (0: ask the engine)."),
    replace: bool = typer.Option(False, help="Replace an existing model of that name."),
) -> None:
    """Register a model served by an engine."""

    async def work(platform: PlatformAPI) -> None:
        record = await platform.add_model(
            name=name,
            engine=engine,
            target=target,
            kind=kind,
            base_url=base_url,
            api_key_secret=api_key_secret,
            dimension=dimension,
            replace=replace,
        )
        console.print(f"added {record.kind} model [bold]{record.name}[/] ({record.engine})")

    await with_platform(work)


@app.command("list")
@run_async
async def list_models() -> None:
    """List registered models."""

    async def work(platform: PlatformAPI) -> None:
        table = Table("name", "kind", "engine", "target", "base url")
        for m in await platform.list_models():
            table.add_row(m.name, m.kind, m.engine, m.target, m.base_url)
        console.print(table)

    await with_platform(work)


@app.command("available")
@run_async
async def available(
    engine: str | None = typer.Option(None, help="Only this engine."),
    base_url: str = typer.Option("", help="Ask the engine at this URL (ollama / openai)."),
) -> None:
    """List models the engines can serve (installed embedded models, Ollama tags, /v1/models)."""

    async def work(platform: PlatformAPI) -> None:
        table = Table("engine", "model", "where")
        with err_console.status("asking engines", spinner="dots"):
            found = await platform.available_models(engine=engine, base_url=base_url)
        for row in found:
            table.add_row(row.engine, row.model, row.where)
        console.print(table)

    await with_platform(work)


@app.command("remove")
@run_async
async def remove(name: str) -> None:
    """Remove a registered model."""

    async def work(platform: PlatformAPI) -> None:
        await platform.remove_model(name)
        console.print(f"removed {name}")

    await with_platform(work)
