"""The supervisor: start workers phase by phase, keep them alive, stop them in order.

Each worker runs in its own session (so its own process group): a Ctrl-C in the terminal
reaches the supervisor only, which then stops the workers in reverse phase order instead of
every process dying at once, and a SIGKILL to the group also ends what the worker started
in it. Readiness and liveness come over a pipe per worker (see
:class:`~roost.supervisor.WorkerLink`); exits come from the process itself.

A worker's life: ``pending`` (its phase has not started) -> ``starting`` -> ``ready`` ->
(crash) ``backoff`` -> ``starting`` ... ; ``unhealthy`` while a silent worker is killed;
``stopping`` -> ``stopped`` at shutdown; ``failed`` when it never started and the supervisor
gave up on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roost._proc import describe_returncode, signal_group
from roost.supervisor._link import (
    HEALTH_FD_ENV,
    HEARTBEAT_ENV,
    STOP_TIMEOUT_ENV,
    SUPERVISOR_PID_ENV,
)
from roost.supervisor._snapshot import (
    STATUS_VERSION,
    ExitInfo,
    SupervisorSnapshot,
    SupervisorState,
    WorkerSnapshot,
    WorkerState,
    write_snapshot,
)
from roost.supervisor._spec import StartupError, SupervisorConfig, WorkerSpec
from roost.supervisor._status import SupervisorLock

__all__ = ["ExitInfo", "Supervisor", "WorkerState", "describe_returncode", "log_tail"]

log = logging.getLogger("roost.supervisor")


def log_tail(path: Path, lines: int = 10) -> str:
    """The last ``lines`` lines of a worker's log file."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


async def _wait_for(event: asyncio.Event, timeout: float) -> bool:
    """Whether ``event`` was set within ``timeout`` seconds."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


class _Worker:
    """One supervised worker slot: the loop that (re)starts its process and watches it."""

    def __init__(
        self, spec: WorkerSpec, config: SupervisorConfig, phase: int, supervisor: Supervisor
    ) -> None:
        self.spec = spec
        self.config = config
        self.phase = phase
        self._supervisor = supervisor
        self.state: WorkerState = "pending"
        self.since = time.time()
        self.pid: int | None = None
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.restarts = 0
        self.last_exit: ExitInfo | None = None
        self.details: dict[str, Any] = {}
        # While the phases start, a worker that keeps failing to start stops everything;
        # afterwards it is restarted for as long as it takes (see SupervisorConfig).
        self.give_up_on_failed_starts = True
        self.failed_starts = 0
        self._streak = 0
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._kill_now = asyncio.Event()
        self._last_beat = 0.0
        self._ready_mono = 0.0
        self._stopping_at = 0.0  # when the worker said it stops (monotonic), 0: it did not
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def log_path(self) -> Path:
        return self.config.log_path(self.spec)

    def _set_state(self, state: WorkerState) -> None:
        if state != self.state:
            self.state = state
            self.since = time.time()
            self._supervisor._notify()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")

    async def stop(self) -> None:
        """Stop the worker (SIGTERM, SIGKILL after the stop timeout) and its restarts."""
        self._stop.set()
        if self._task is not None:
            await self._task
        elif self.state == "pending":
            self._set_state("stopped")

    def kill_now(self) -> None:
        """Skip the rest of the stop timeout: SIGKILL the worker if it is being stopped."""
        self._kill_now.set()

    def snapshot(self) -> WorkerSnapshot:
        return WorkerSnapshot(
            name=self.name,
            role=self.spec.role,
            index=self.spec.index,
            phase=self.phase,
            pid=self.pid,
            state=self.state,
            since=self.since,
            started_at=self.started_at,
            ready_at=self.ready_at,
            restarts=self.restarts,
            last_exit=self.last_exit,
            details=self.details,
            log=str(self.log_path),
        )

    # --- the supervision loop -------------------------------------------------------------

    async def _supervise(self) -> None:
        config = self.config
        try:
            while not self._stop.is_set():
                became_ready, served = await self._run_once()
                if self._stop.is_set():
                    break
                if became_ready:
                    self.failed_starts = 0
                    if served >= config.stable_after_s:
                        self._streak = 0
                else:
                    self.failed_starts += 1
                    if self.give_up_on_failed_starts and self.failed_starts > config.start_retries:
                        tail = log_tail(self.log_path)
                        log.error(
                            "%s failed to start %d time(s) in a row (last: %s); giving up. "
                            "Last lines of %s:\n%s",
                            self.name,
                            self.failed_starts,
                            self.last_exit,
                            self.log_path,
                            tail or "(no output)",
                        )
                        self._set_state("failed")
                        return
                delay = min(
                    config.restart_backoff_s * 2 ** min(self._streak, 30),
                    config.restart_backoff_max_s,
                )
                self._streak += 1
                self._set_state("backoff")
                log.warning("%s: restart %d in %.1fs", self.name, self.restarts + 1, delay)
                if await _wait_for(self._stop, delay):
                    break
                self.restarts += 1
        except Exception:
            # a bug here must not take the other workers down with it: report and give up
            log.exception("%s: supervision failed", self.name)
            self._set_state("failed")
            return
        self._set_state("stopped")

    async def _run_once(self) -> tuple[bool, float]:
        """Start the process and watch it until it exits. Returns whether it became ready
        and how long it was ready (what counts for a stable worker)."""
        spec, config = self.spec, self.config
        self._ready.clear()
        self._kill_now.clear()
        self._stopping_at = 0.0
        self.details = {}
        self.ready_at = None
        self._set_state("starting")
        read_fd, write_fd = os.pipe()
        env = {
            **os.environ,
            **spec.env,
            HEALTH_FD_ENV: str(write_fd),
            SUPERVISOR_PID_ENV: str(os.getpid()),
            HEARTBEAT_ENV: repr(config.heartbeat_s),
            STOP_TIMEOUT_ENV: repr(config.stop_timeout_s),
        }
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as out:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                out.write(f"--- {stamp} {self.name} (restart {self.restarts}): ".encode())
                out.write(" ".join(spec.argv).encode() + b"\n")
                out.flush()
                proc = await asyncio.create_subprocess_exec(
                    *spec.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    pass_fds=(write_fd,),
                    # own session and process group: see the module docstring
                    start_new_session=True,
                )
        except OSError as exc:
            os.close(read_fd)
            self.last_exit = ExitInfo(None, None, f"could not start: {exc}", time.time())
            log.error("%s: cannot start %s: %s", self.name, spec.argv[0], exc)
            return False, 0.0
        finally:
            os.close(write_fd)  # the worker holds the only write end: EOF when it is gone

        self.pid = proc.pid
        self.started_at = time.time()
        started = time.monotonic()
        log.info("%s started (pid %d), log %s", self.name, proc.pid, self.log_path)
        self._supervisor._notify()
        reader = asyncio.create_task(self._read_health(read_fd), name=f"health-{self.name}")
        exited = asyncio.create_task(proc.wait(), name=f"wait-{self.name}")
        reason = ""
        try:
            reason = await self._watch(proc, exited)
        finally:
            if not exited.done():  # cancelled mid-watch: never leave the process behind
                signal_group(proc.pid, signal.SIGKILL)
                await asyncio.shield(exited)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        uptime = time.monotonic() - started
        if signal_group(proc.pid, 0):
            log.warning("%s left processes in its group: killing them", self.name)
            signal_group(proc.pid, signal.SIGKILL)
        self.last_exit = ExitInfo.from_returncode(exited.result(), reason)
        self.pid = None
        became_ready = self._ready.is_set()
        served = time.monotonic() - self._ready_mono if became_ready else 0.0
        if self._stop.is_set():
            log.info("%s stopped (%s)", self.name, self.last_exit)
        else:
            log.warning(
                "%s (pid %d) %s after %.1fs%s",
                self.name,
                proc.pid,
                self.last_exit,
                uptime,
                "" if became_ready else ", before it was ready",
            )
        self._supervisor._notify()
        return became_ready, served

    async def _watch(self, proc: asyncio.subprocess.Process, exited: asyncio.Task[int]) -> str:
        """Wait for ready, then watch the heartbeat, until the process exits (or is ended).
        Returns why the supervisor ended it, if it did."""
        config = self.config
        stop = asyncio.create_task(self._stop.wait())
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait(
                {exited, stop, ready},
                timeout=config.start_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if exited.done():
                return ""
            if stop.done():
                await self._terminate(proc, exited)
                return ""
            if not self._ready.is_set():
                log.error(
                    "%s (pid %d) did not become ready within %gs: killing it",
                    self.name,
                    proc.pid,
                    config.start_timeout_s,
                )
                await self._kill(proc, exited)
                return f"not ready within {config.start_timeout_s:g}s"
            check_every = min(config.heartbeat_s / 2, 1.0)
            while True:
                await asyncio.wait(
                    {exited, stop}, timeout=check_every, return_when=asyncio.FIRST_COMPLETED
                )
                if exited.done():
                    return ""
                if stop.done():
                    await self._terminate(proc, exited)
                    return ""
                if self._stopping_at:
                    # it stops by itself and beats no more: give it the stop timeout
                    if time.monotonic() - self._stopping_at > config.stop_timeout_s:
                        log.error(
                            "%s (pid %d) said it stops but did not exit within %gs: killing it",
                            self.name,
                            proc.pid,
                            config.stop_timeout_s,
                        )
                        await self._kill(proc, exited)
                        return f"did not exit within {config.stop_timeout_s:g}s of stopping"
                    continue
                silent = time.monotonic() - self._last_beat
                if silent > config.unhealthy_after_s:
                    self._set_state("unhealthy")
                    log.error(
                        "%s (pid %d) is unhealthy: no heartbeat for %.1fs; killing it (hung)",
                        self.name,
                        proc.pid,
                        silent,
                    )
                    # a hung worker would not act on SIGTERM either
                    await self._kill(proc, exited)
                    return f"no heartbeat for {silent:.1f}s"
        finally:
            stop.cancel()
            ready.cancel()

    async def _terminate(self, proc: asyncio.subprocess.Process, exited: asyncio.Task[int]) -> None:
        """SIGTERM the worker; SIGKILL its group after the stop timeout (or on kill_now)."""
        self._set_state("stopping")
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)  # the worker stops its own children in order
        kill_now = asyncio.create_task(self._kill_now.wait())
        try:
            await asyncio.wait(
                {exited, kill_now},
                timeout=self.config.stop_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            kill_now.cancel()
        if not exited.done():
            if self._kill_now.is_set():
                log.warning("%s (pid %d): killing it now", self.name, proc.pid)
            else:
                log.warning(
                    "%s (pid %d) did not stop within %gs: killing it",
                    self.name,
                    proc.pid,
                    self.config.stop_timeout_s,
                )
            await self._kill(proc, exited)

    async def _kill(self, proc: asyncio.subprocess.Process, exited: asyncio.Task[int]) -> None:
        signal_group(proc.pid, signal.SIGKILL)
        await exited

    # --- the health pipe --------------------------------------------------------------------

    async def _read_health(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=65536)
        pipe = os.fdopen(fd, "rb", buffering=0)
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe
            )
        except BaseException:
            pipe.close()
            raise
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # a line over the limit: skipped by readline
                    log.warning("%s: ignoring an over-long line on the health pipe", self.name)
                    continue
                if not line:
                    return  # EOF: the worker closed its end (or exited)
                self._on_message(line)
        finally:
            transport.close()

    def _on_message(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("%s: ignoring a health line that is not JSON: %r", self.name, line[:200])
            return
        if not isinstance(message, dict) or not isinstance(message.get("state"), str):
            log.warning("%s: ignoring a health message without a state: %r", self.name, line[:200])
            return
        self._last_beat = time.monotonic()  # any message proves the loop runs
        if message["state"] == "ready" and not self._ready.is_set():
            self.details = {k: v for k, v in message.items() if k not in ("state", "pid")}
            self.ready_at = time.time()
            self._ready_mono = time.monotonic()
            self._ready.set()
            if self.state == "starting":
                self._set_state("ready")
            took = self.ready_at - (self.started_at or self.ready_at)
            extra = "".join(f" {k}={v}" for k, v in self.details.items())
            log.info("%s ready (pid %s) in %.1fs%s", self.name, self.pid, took, extra)
        elif message["state"] == "stopping":
            self._stopping_at = time.monotonic()


class Supervisor:
    """Run ``phases`` of workers (see the module docstring) until stopped.

    ``await supervisor.run()`` takes the lock of ``config.run_dir`` (or raises
    :class:`~roost.supervisor.AlreadyRunningError`), starts phase after phase (the next one
    only once every worker of this one is ready), then keeps the workers running until
    SIGTERM/SIGINT/SIGHUP (with ``handle_signals``) or :meth:`request_stop`, and stops them
    in reverse phase order. It raises :class:`~roost.supervisor.StartupError` (after
    stopping what it started) when a worker never becomes ready. A second signal during
    the shutdown SIGKILLs the workers still running at once.
    """

    def __init__(self, phases: Sequence[Sequence[WorkerSpec]], config: SupervisorConfig) -> None:
        names: set[str] = set()
        self._phases: list[list[_Worker]] = []
        for number, phase in enumerate((p for p in phases if p), 1):
            workers = []
            for spec in phase:
                if spec.name in names:
                    raise ValueError(f"worker {spec.name} is listed twice")
                names.add(spec.name)
                workers.append(_Worker(spec, config, number, self))
            self._phases.append(workers)
        if not names:
            raise ValueError("nothing to supervise: every phase is empty")
        self.config = config
        self.node = config.node or socket.gethostname()
        self.state: SupervisorState = "idle"
        self.started_at: float | None = None
        self.phase = 0
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()  # the status file is due
        self._wake = asyncio.Event()  # a phase wait should look again
        self._signals = 0

    @property
    def workers(self) -> list[_Worker]:
        return [w for phase in self._phases for w in phase]

    def request_stop(self, reason: str = "stop requested") -> None:
        """Begin the clean shutdown (idempotent)."""
        if not self._stop.is_set():
            log.info("stopping: %s", reason)
            self._stop.set()
            self._notify()

    def kill_now(self) -> None:
        """SIGKILL workers still running instead of waiting out the stop timeout."""
        for worker in self.workers:
            worker.kill_now()

    def _notify(self) -> None:
        self._changed.set()
        self._wake.set()

    def snapshot(self) -> SupervisorSnapshot:
        """The status as written to ``config.status_path``."""
        return SupervisorSnapshot(
            version=STATUS_VERSION,
            name=self.config.name,
            pid=os.getpid(),
            node=self.node,
            state=self.state,
            started_at=self.started_at,
            updated_at=time.time(),
            phase=self.phase,
            phases=len(self._phases),
            heartbeat_s=self.config.heartbeat_s,
            log_dir=str(self.config.log_dir),
            workers=[w.snapshot() for w in self.workers],
        )

    # --- running ----------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True) -> None:
        if self.state != "idle":
            raise RuntimeError("a Supervisor runs once")
        lock = SupervisorLock(self.config.lock_path)
        lock.acquire()
        failed: _Worker | None = None
        try:
            self.config.log_dir.mkdir(parents=True, exist_ok=True)
            self.started_at = time.time()
            self.state = "starting"
            log.info(
                "supervisor %d on %s: %d worker(s) in %d phase(s); logs in %s",
                os.getpid(),
                self.node,
                len(self.workers),
                len(self._phases),
                self.config.log_dir,
            )
            status = asyncio.create_task(self._status_loop(), name="supervisor-status")
            handled = self._install_signals() if handle_signals else []
            try:
                failed = await self._start_phases()
                if failed is None and not self._stop.is_set():
                    self.state = "running"
                    for worker in self.workers:
                        worker.give_up_on_failed_starts = False
                    log.info("all %d worker(s) ready", len(self.workers))
                    self._notify()
                    await self._stop.wait()
            finally:
                self.state = "stopping"
                self._notify()
                await self._stop_all()
                self.state = "stopped"
                loop = asyncio.get_running_loop()
                for sig in handled:
                    loop.remove_signal_handler(sig)
                status.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await status
                self.config.status_path.unlink(missing_ok=True)
                log.info("supervisor stopped")
        finally:
            lock.release()
        if failed is not None:
            raise StartupError(
                failed.name,
                f"worker {failed.name} did not start ({failed.last_exit}); see {failed.log_path}",
            )

    def _install_signals(self) -> list[int]:
        loop = asyncio.get_running_loop()
        handled: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                continue
            handled.append(sig)
        return handled

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        name = signal.Signals(sig).name
        if self._signals == 1:
            self.request_stop(f"received {name}")
        else:
            log.warning("received %s again: killing the workers now", name)
            self.kill_now()

    async def _start_phases(self) -> _Worker | None:
        """Start phase after phase; the worker that failed, if one did."""
        for number, phase in enumerate(self._phases, 1):
            if self._stop.is_set():
                return None
            self.phase = number
            log.info(
                "phase %d/%d: starting %s",
                number,
                len(self._phases),
                ", ".join(w.name for w in phase),
            )
            for worker in phase:
                worker.start()
            self._notify()
            while True:
                self._wake.clear()
                if self._stop.is_set():
                    return None
                # a worker of an earlier phase may have crashed and failed to come back too
                failed = next((w for w in self.workers if w.state == "failed"), None)
                if failed is not None:
                    return failed
                if all(w.state == "ready" for w in phase):
                    break
                await self._wake.wait()
        return None

    async def _stop_all(self) -> None:
        for number in range(len(self._phases), 0, -1):
            phase = self._phases[number - 1]
            live = [w for w in phase if w.state not in ("pending", "stopped", "failed")]
            if live:
                log.info("stopping phase %d: %s", number, ", ".join(w.name for w in live))
            await asyncio.gather(*(w.stop() for w in phase))

    async def _status_loop(self) -> None:
        warned = False
        while True:
            self._changed.clear()
            try:
                write_snapshot(self.config.status_path, self.snapshot())
                warned = False
            except OSError as exc:
                if not warned:
                    log.warning("cannot write the status %s: %s", self.config.status_path, exc)
                    warned = True
            await _wait_for(self._changed, self.config.status_interval_s)
