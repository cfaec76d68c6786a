"""``roost doctor``: one line per check of this installation, with the fix of each failure."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from roost.cli._common import console

if TYPE_CHECKING:
    from roost.doctor import CheckResult

_STYLE = {"ok": "green", "FAIL": "bold red", "skip": "yellow"}


def doctor() -> None:
    """Check the installation: Python, ROOST_HOME, sqlite-vec, the embedded engines (load and
    generate), the Temporal / NATS / Postgres binaries, and the configured services."""
    from roost.doctor import run_checks  # the checks import much of roost: only when run

    started = time.perf_counter()
    results = asyncio.run(run_checks())
    width = max(len(r.name) for r in results)
    for result in results:
        _print(result, width)
    failed = [r for r in results if r.failed]
    took = time.perf_counter() - started
    if failed:
        console.print(
            f"{len(failed)} of {len(results)} checks failed ({took:.1f}s)", style="bold red"
        )
        raise typer.Exit(1)
    console.print(f"all {len(results)} checks passed ({took:.1f}s)", style="green")


def _print(result: CheckResult, width: int) -> None:
    status = f"[{_STYLE[result.status]}]{result.status:<4}[/]"
    console.print(f"{status}  {result.name:<{width}}  {escape(result.detail)}", highlight=False,
                  soft_wrap=True)  # fmt: skip
    if result.fix:
        console.print(
            f"      {'':<{width}}  fix: {escape(result.fix)}", highlight=False, soft_wrap=True
        )
