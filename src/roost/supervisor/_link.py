"""The worker's end of the supervisor link: readiness, heartbeats, and a dead supervisor.

The supervisor starts each worker with the write end of a pipe (its number in
``ROOST_HEALTH_FD``). The worker writes JSON lines to it: ``{"state": "ready", ...}`` once it
serves, then ``{"state": "alive"}`` every heartbeat from its event loop, so a worker whose
loop is stuck stops beating and is restarted. The same link makes the worker exit when the
supervisor is gone, so a killed supervisor leaves no orphans: Linux delivers SIGTERM when
the parent dies (``PR_SET_PDEATHSIG``), a thread watches the parent pid (any POSIX system),
and a write to the pipe fails once nobody reads it. A worker that does not stop within the
stop timeout after that is ended with ``os._exit``: nobody else is left to kill it.

Outside a supervisor (no ``ROOST_HEALTH_FD``) every method is a no-op, so the same worker
program runs by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from roost._proc import set_parent_death_signal

__all__ = [
    "HEALTH_FD_ENV",
    "HEARTBEAT_ENV",
    "LINK_ENV",
    "STOP_TIMEOUT_ENV",
    "SUPERVISOR_PID_ENV",
    "WorkerLink",
]

log = logging.getLogger("roost.supervisor.link")

HEALTH_FD_ENV = "ROOST_HEALTH_FD"
SUPERVISOR_PID_ENV = "ROOST_SUPERVISOR_PID"
HEARTBEAT_ENV = "ROOST_HEARTBEAT_S"
STOP_TIMEOUT_ENV = "ROOST_STOP_TIMEOUT_S"
#: The variables a supervisor sets for its workers (removed from the worker's environment
#: once read, so the worker's own children do not mistake themselves for supervised).
LINK_ENV = (HEALTH_FD_ENV, SUPERVISOR_PID_ENV, HEARTBEAT_ENV, STOP_TIMEOUT_ENV)

# Writes up to PIPE_BUF bytes are atomic on a pipe: a line is never torn or interleaved.
_PIPE_BUF = getattr(select, "PIPE_BUF", 512)
_PARENT_POLL_S = 0.5


def _terminate_self() -> None:
    # the worker's own SIGTERM handling (graceful stop) runs, exactly as under `kill`
    os.kill(os.getpid(), signal.SIGTERM)


def _hard_exit(reason: str) -> None:
    with contextlib.suppress(Exception):
        print(f"{reason}; the worker did not stop in time: exiting now", file=sys.stderr)
        sys.stderr.flush()
    os._exit(70)


class WorkerLink:
    """A worker's link to its supervisor (see the module docstring).

    Build it with :meth:`from_env` early in the worker, call ``await link.ready(**details)``
    once the worker serves (that starts the heartbeat), and ``await link.close()`` (or use
    ``async with``) when it stops. ``on_orphaned`` runs (from any thread) when the
    supervisor is found gone; by default the worker sends itself SIGTERM.
    """

    def __init__(
        self,
        fd: int | None,
        *,
        supervisor_pid: int | None = None,
        heartbeat_s: float = 2.0,
        stop_timeout_s: float = 15.0,
        on_orphaned: Callable[[], None] | None = None,
    ) -> None:
        if heartbeat_s <= 0 or stop_timeout_s <= 0:
            raise ValueError("WorkerLink: heartbeat_s and stop_timeout_s must be > 0")
        self.fd = fd
        self.supervisor_pid = supervisor_pid
        self.heartbeat_s = heartbeat_s
        self.stop_timeout_s = stop_timeout_s
        self.on_orphaned = on_orphaned or _terminate_self
        self.orphaned = False
        self._ready = False
        self._beat_task: asyncio.Task[None] | None = None
        self._closed = threading.Event()
        self._orphan_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        if fd is not None:
            # never leak the pipe into the worker's own children: only this process beats
            os.set_inheritable(fd, False)
            # a full pipe (supervisor stuck) must drop a beat, not block the event loop
            os.set_blocking(fd, False)
            if supervisor_pid is not None:
                self._watch_parent(supervisor_pid)

    @classmethod
    def from_env(
        cls,
        environ: MutableMapping[str, str] | None = None,
        *,
        on_orphaned: Callable[[], None] | None = None,
    ) -> WorkerLink:
        """The link the supervisor set up through the environment, or an inert one when the
        process is not supervised. Removes the link variables from ``environ``."""
        env = os.environ if environ is None else environ
        values = {key: env.pop(key, None) for key in LINK_ENV}
        raw_fd = values[HEALTH_FD_ENV]
        if raw_fd is None:
            return cls(None, on_orphaned=on_orphaned)
        try:
            fd = int(raw_fd)
            mode = os.fstat(fd).st_mode
        except (ValueError, OSError) as exc:
            raise ValueError(
                f"{HEALTH_FD_ENV}={raw_fd!r} is not an open file descriptor ({exc})"
            ) from None
        if not stat.S_ISFIFO(mode):
            raise ValueError(f"{HEALTH_FD_ENV}={raw_fd} is not a pipe")
        try:
            pid = int(values[SUPERVISOR_PID_ENV] or 0) or None
            heartbeat = float(values[HEARTBEAT_ENV] or 2.0)
            stop_timeout = float(values[STOP_TIMEOUT_ENV] or 15.0)
        except ValueError as exc:
            raise ValueError(f"bad supervisor link variable: {exc}") from None
        return cls(
            fd,
            supervisor_pid=pid,
            heartbeat_s=heartbeat,
            stop_timeout_s=stop_timeout,
            on_orphaned=on_orphaned,
        )

    @property
    def supervised(self) -> bool:
        return self.fd is not None

    @property
    def is_ready(self) -> bool:
        return self._ready

    async def ready(self, **details: Any) -> None:
        """Tell the supervisor this worker serves (once; later calls do nothing) and start
        beating. ``details`` (JSON values: an address, the services served) show in the
        supervisor's status."""
        if self._ready:
            return
        if self.fd is not None:
            self._send({**details, "state": "ready", "pid": os.getpid()})  # may raise: not ready
            self._beat_task = asyncio.create_task(self._beat(), name="roost-supervisor-heartbeat")
        self._ready = True

    async def _beat(self) -> None:
        # On the event loop on purpose: a loop that is stuck stops the beats.
        while True:
            await asyncio.sleep(self.heartbeat_s)
            self._send({"state": "alive"})

    def _send(self, message: dict[str, Any]) -> None:
        fd = self.fd
        if fd is None or self._closed.is_set():
            return
        data = (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()
        if len(data) > _PIPE_BUF:
            raise ValueError(
                f"supervisor message of {len(data)} bytes is over the {_PIPE_BUF}-byte "
                "atomic pipe write; keep ready details small"
            )
        try:
            os.write(fd, data)
        except BlockingIOError:
            log.debug("health pipe full (the supervisor is not reading): beat dropped")
        except (BrokenPipeError, OSError) as exc:
            self._orphan(f"the supervisor's health pipe is gone ({exc.strerror or exc})")

    def _watch_parent(self, supervisor_pid: int) -> None:
        set_parent_death_signal(signal.SIGTERM)
        # PDEATHSIG is armed only from now on: the supervisor may have died before
        if os.getppid() != supervisor_pid:
            self._orphan(f"the supervisor (pid {supervisor_pid}) is gone")
            return

        def watch() -> None:
            while not self._closed.wait(_PARENT_POLL_S):
                if os.getppid() != supervisor_pid:
                    self._orphan(f"the supervisor (pid {supervisor_pid}) is gone")
                    return

        self._watcher = threading.Thread(target=watch, name="roost-supervisor-watch", daemon=True)
        self._watcher.start()

    def _orphan(self, reason: str) -> None:
        with self._orphan_lock:
            if self.orphaned:
                return
            self.orphaned = True
        log.warning("%s: stopping this worker", reason)
        timer = threading.Timer(self.stop_timeout_s, _hard_exit, args=(reason,))
        timer.daemon = True
        timer.start()
        self.on_orphaned()

    async def close(self) -> None:
        """Stop beating, say so, and close the pipe (the supervisor expects the exit next)."""
        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
            self._beat_task = None
        if self.fd is not None and not self._closed.is_set():
            with contextlib.suppress(ValueError):
                self._send({"state": "stopping", "at": time.time()})
        self._closed.set()
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def __aenter__(self) -> WorkerLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
