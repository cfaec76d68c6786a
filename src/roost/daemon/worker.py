"""One ``roostd`` worker: ``python -m roost.daemon.worker`` (or ``roostd worker``).

Runs the role named by ``ROOST_WORKER_ROLE`` (see :data:`roost.daemon._roles.ROLE_RUNNERS`)
in this process until SIGTERM / SIGINT, linked to its supervisor by a
:class:`~roost.supervisor.WorkerLink` (inert when started by hand). Exit codes: 0 stopped,
1 the role failed (the supervisor restarts it), 2 a usage or configuration error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from roost.config import WORKER_ROLES, ConfigError, Settings, load_settings
from roost.daemon._env import INDEX_ENV, ROLE_ENV
from roost.daemon._roles import ROLE_RUNNERS, RoleRunner
from roost.supervisor import WorkerLink

__all__ = ["main", "run_worker"]

log = logging.getLogger("roost.daemon")


def _error(message: str) -> None:
    print(f"roostd worker: error: {message}", file=sys.stderr, flush=True)


def _runner_for(role: str) -> RoleRunner:
    if not role:
        raise ValueError(f"{ROLE_ENV} is not set (one of: {', '.join(WORKER_ROLES)})")
    if role not in WORKER_ROLES:
        raise ValueError(f"unknown worker role {role!r} (roles: {', '.join(WORKER_ROLES)})")
    runner = ROLE_RUNNERS.get(role)
    if runner is None:
        raise ValueError(f"role {role} has no runner in this build")
    return runner


async def _serve(runner: RoleRunner, settings: Settings, link: WorkerLink) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with link:
        await runner(settings, link, stop)
    if not stop.is_set():
        log.warning("the role stopped by itself")


def run_worker(role: str | None = None) -> int:
    """Run one worker of ``role`` (default: ``$ROOST_WORKER_ROLE``); the exit code."""
    name = role or os.environ.get(ROLE_ENV, "")
    try:
        runner = _runner_for(name)
        link = WorkerLink.from_env()
    except ValueError as exc:
        _error(str(exc))
        return 2
    try:
        settings = load_settings()
    except ConfigError as exc:
        _error(str(exc))
        return 2
    index = os.environ.get(INDEX_ENV, "0")
    logging.basicConfig(
        level=settings.log.level,
        format=f"%(asctime)s %(levelname)s [{name}-{index} %(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # this worker's own lifecycle lines belong in its log whatever the level
    logging.getLogger("roost.daemon").setLevel(min(logging.INFO, logging.getLogger().level))
    logging.getLogger("roost.supervisor").setLevel(min(logging.INFO, logging.getLogger().level))
    from roost.protocol import RoostError

    try:
        asyncio.run(_serve(runner, settings, link))
    except (RoostError, OSError, ConfigError) as exc:
        _error(f"{name}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        log.exception("%s worker failed", name)
        return 1
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
    return 0


def main() -> None:
    sys.exit(run_worker())


if __name__ == "__main__":
    main()
