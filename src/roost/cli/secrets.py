"""``roost secret``: put, get, delete, exists (values are encrypted at rest)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from roost.cli._common import console, fail, run_async, with_platform

if TYPE_CHECKING:
    from roost.platform import PlatformAPI

app = typer.Typer(help="Store secrets (API keys), encrypted at rest.", no_args_is_help=True)


@app.command("put")
@run_async
async def put(
    name: str,
    value: str | None = typer.Argument(
        None, help="The value; omitted: read from stdin (or a hidden prompt)."
    ),
) -> None:
    """Store a secret."""
    if value is None:
        value = (
            sys.stdin.read().rstrip("\n")
            if not sys.stdin.isatty()
            else typer.prompt(f"value of {name}", hide_input=True)
        )
    if not value:
        fail("a secret's value must not be empty")
    secret = value

    async def work(platform: PlatformAPI) -> None:
        await platform.secrets.put(name, secret)
        console.print(f"stored secret {name}")

    await with_platform(work)


@app.command("get")
@run_async
async def get(name: str) -> None:
    """Print a secret's value."""

    async def work(platform: PlatformAPI) -> None:
        value = await platform.secrets.get(name)
        sys.stdout.write(value + "\n")

    await with_platform(work)


@app.command("delete")
@run_async
async def delete(name: str) -> None:
    """Delete a secret."""

    async def work(platform: PlatformAPI) -> None:
        await platform.secrets.delete(name)
        console.print(f"deleted secret {name}")

    await with_platform(work)


@app.command("exists")
@run_async
async def exists(name: str) -> None:
    """Exit 0 if the secret exists, 1 if not."""

    async def work(platform: PlatformAPI) -> bool:
        return bool(await platform.secrets.exists(name))

    found = await with_platform(work)
    console.print("yes" if found else "no")
    if not found:
        raise typer.Exit(1)
