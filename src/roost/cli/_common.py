"""Shared CLI plumbing: one-line errors, the platform lifecycle, consoles."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from roost.config import ConfigError, Settings, load_client_settings, load_settings
from roost.protocol import RoostError

if TYPE_CHECKING:
    from roost.platform import PlatformAPI

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
T = TypeVar("T")

# Errors a user can act on: print the cause in one line, no traceback. Every error roost raises
# on purpose is a RoostError, the config, manifest, bundle and plan errors among them.
USER_ERRORS: tuple[type[BaseException], ...] = (RoostError, OSError)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        loaded = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    logging.basicConfig(
        level=loaded.log.level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if logging.getLogger().level >= logging.WARNING:
        # Temporal logs every failed activity attempt with its traceback; roost reports the
        # failures that matter itself (in the run's completion and the session)
        logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    return loaded


def run_async(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an async command, turning expected errors into a one-line message and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return asyncio.run(fn(*args, **kwargs))
        except USER_ERRORS as exc:
            fail(str(exc) or type(exc).__name__)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


async def with_platform(
    work: Callable[[PlatformAPI], Awaitable[T]],
    *,
    services: bool = False,
    worker: bool = False,
    runs: bool = False,
    status: str = "",
    local_only: bool = False,
) -> T:
    """Open the platform, run ``work(platform)``, close it.

    With an API server configured (``api_url`` in ``client.toml``, or
    ``ROOST_CLIENT__API_URL``) the platform is an :class:`~roost.platform.HttpPlatform`
    talking to it over HTTP(S); with a deployment's harness (``harness``, or
    ``ROOST_CLIENT__HARNESS``) a :class:`~roost.platform.RemotePlatform` talking to it over
    gRPC; otherwise the platform runs in this process from the settings. ``worker``: this
    process also executes durable runs (``agent run``, ``roost worker``); ``runs``: the
    command starts, inspects or steers runs (connects to Temporal); the others do not need
    it and stay fast. ``local_only``: the command only makes sense in this process
    (``roost worker``).
    """
    from roost.platform import HttpPlatform, Platform, RemotePlatform

    config = settings()
    try:
        client = load_client_settings()
    except ConfigError as exc:
        fail(str(exc))
    platform: PlatformAPI
    if client.over_api and not local_only:
        try:
            platform = HttpPlatform(client)
        except ConfigError as exc:  # an unreadable token_file or ca_file
            fail(str(exc))
    elif client.remote and not local_only:
        platform = RemotePlatform(client)
    elif status:
        with err_console.status(status, spinner="dots"):
            platform = await Platform.open(
                config, start_services=services, worker=worker, runs=runs
            )
    else:
        platform = await Platform.open(config, start_services=services, worker=worker, runs=runs)
    try:
        return await work(platform)
    finally:
        await platform.close()
