"""``roost worker``: execute durable agent runs in this process until stopped."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

from roost.cli._common import err_console, fail, run_async, settings, with_platform

if TYPE_CHECKING:
    from roost.platform import PlatformAPI


@run_async
async def worker() -> None:
    """Run agents: poll the run task queue (and serve the local services) until Ctrl-C or
    SIGTERM. Runs a crashed process left behind resume here."""
    config = settings().workflows
    if config.engine != "temporal":
        fail('roost worker needs durable runs ([workflows] engine = "temporal")')
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def work(platform: PlatformAPI) -> None:
        err_console.print(
            f"worker ready: task queue {config.task_queue!r}, namespace {config.namespace!r}",
            highlight=False,
        )
        await stop.wait()
        err_console.print("worker stopping")

    await with_platform(work, worker=True, status="starting worker", local_only=True)
