"""One engine host process seen from its parent: spawn, pipes, threads, calls in flight.

The channel is loop-independent on purpose: an engine set outlives event loops (tests run
one loop per test, ``asyncio.run`` in scripts), so nothing here belongs to a loop. A reader
thread decodes the host's frames and posts each to the loop of the call it answers; a writer
thread drains an outbox, so a caller never blocks on a full pipe; a third thread keeps the
tail of the host's stderr for error messages and logs it.

Hosts are spawned from one long-lived thread: ``PR_SET_PDEATHSIG`` fires when the *thread*
that forked the child exits, so forking from a short-lived thread (``asyncio.to_thread``,
whose pool is shut down with its loop) would kill a healthy host with it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import roost
from roost.engines._frames import (
    Cancel,
    Done,
    Failed,
    Loaded,
    Loading,
    Op,
    Ready,
    ToHost,
    Token,
    encode,
    read_frame,
    to_parent_decoder,
    write_all,
)
from roost.protocol import RoostError
from roost.stores import ModelRecord

log = logging.getLogger("roost.engines.host")

_STDERR_LINES = 40
_EXIT_WAIT_S = 5.0
_spawn_lock = threading.Lock()
_spawner: concurrent.futures.ThreadPoolExecutor | None = None


def _spawn_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread that forks hosts (see the module docs); it lives as long as the
    process (its idle worker waits for work and is never retired)."""
    global _spawner
    with _spawn_lock:
        if _spawner is None:
            _spawner = concurrent.futures.ThreadPoolExecutor(1, "roost-engine-spawn")
        return _spawner


Item = str | Done | RoostError
"""What a call's queue receives: a streamed token, then its result or its error."""


@dataclass(eq=False)
class Pending:
    """A call in flight in a host, answered on the caller's own loop."""

    id: int
    op: Op
    model: ModelRecord | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)
    loading: bool = False
    finished: bool = False

    def post(self, item: Item) -> None:
        """Hand ``item`` to the caller (from any thread); a result or error ends the call."""
        if not isinstance(item, str):
            self.finished = True
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


ExitHandler = Callable[["Child", int, list[Pending]], None]


class Child:
    """One host process. Build it with :meth:`spawn`; ``ready`` resolves to its pid once it
    takes calls. ``on_exit(child, returncode, pending)`` runs on the reader thread when it
    ends, with the calls it still had; ``on_loaded(model)`` when it loads a model."""

    def __init__(
        self,
        engine: str,
        on_exit: ExitHandler,
        on_loaded: Callable[[ModelRecord], None],
    ) -> None:
        self.engine = engine
        self.on_exit = on_exit
        self.on_loaded = on_loaded
        self.ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self.ready.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it
        self.pid = 0
        self.popen: subprocess.Popen[bytes] | None = None
        self.dead = False
        self.stopping = False
        self.kill_reason = ""
        self.loaded: set[str] = set()  # roost names of the models it loaded
        self.stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        self._next_id = 0
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    @classmethod
    def spawn(
        cls,
        engine: str,
        options: dict[str, Any],
        on_exit: ExitHandler,
        on_loaded: Callable[[ModelRecord], None],
        *,
        python: Sequence[str] | None = None,
    ) -> Child:
        """Start a host for ``engine`` (on the spawn thread); returns at once."""
        child = cls(engine, on_exit, on_loaded)
        command = [*(python or [sys.executable]), "-m", "roost.engines._host", engine]
        _spawn_thread().submit(child._start, command, options)
        return child

    @property
    def is_ready(self) -> bool:
        return self.ready.done() and self.ready.exception() is None

    # --- calls (any thread) ------------------------------------------------------------

    def open(
        self, op: Op, model: ModelRecord | None, loop: asyncio.AbstractEventLoop
    ) -> Pending | None:
        """Register a new call (``None``: the host is already gone)."""
        with self._lock:
            if self.dead:
                return None
            self._next_id += 1
            pending = self._pending[self._next_id] = Pending(self._next_id, op, model, loop)
            return pending

    def send(self, frame: ToHost) -> None:
        self._outbox.put(encode(frame))

    def cancel(self, call_id: int) -> None:
        self.send(Cancel(id=call_id))

    def forget(self, call_id: int) -> None:
        with self._lock:
            self._pending.pop(call_id, None)

    # --- lifecycle ---------------------------------------------------------------------

    def _start(self, command: list[str], options: dict[str, Any]) -> None:
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        env = dict(os.environ)
        source = str(Path(roost.__file__).resolve().parent.parent)  # this very roost
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
        argv = [
            *command,
            "--requests", str(requests_r), "--replies", str(replies_w),
            "--parent", str(os.getpid()), "--options", json.dumps(options),
        ]  # fmt: skip
        try:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(requests_r, replies_w),
                env=env,
            )
        except OSError as exc:
            os.close(requests_w)
            os.close(replies_r)
            self.stderr.append(f"cannot run {command[0]}: {exc.strerror or exc}")
            self._exited(127)
            return
        finally:  # the host's ends, now that it has them
            os.close(requests_r)
            os.close(replies_w)
        self.pid = self.popen.pid
        log.debug("started the %s engine process (pid %d)", self.engine, self.pid)
        assert self.popen.stderr is not None
        self._threads = [
            threading.Thread(
                target=target, args=(arg,), name=f"roost-{self.engine}-{name}", daemon=True
            )
            for target, arg, name in (
                (self._read_stderr, self.popen.stderr, "stderr"),
                (self._write, requests_w, "write"),
                (self._read, replies_r, "read"),
            )
        ]
        for thread in self._threads:
            thread.start()

    def kill(self, reason: str) -> None:
        """SIGKILL the host (the reader then reports its end to the calls in flight)."""
        self.kill_reason = self.kill_reason or reason
        if self.popen is not None and self.popen.returncode is None:
            with contextlib.suppress(OSError):
                self.popen.kill()

    def stop(self, timeout_s: float) -> None:
        """Close the request pipe (the host frees its models and exits); kill it after
        ``timeout_s``. Blocking."""
        self.stopping = True
        self._outbox.put(None)
        if self.popen is not None:
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill(f"it did not stop within {timeout_s:g}s")
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout_s)

    # --- threads -----------------------------------------------------------------------

    def _read(self, fd: int) -> None:
        try:
            with os.fdopen(fd, "rb") as stream:
                while (body := read_frame(stream)) is not None:
                    self._on_frame(to_parent_decoder.decode(body))
        except Exception as exc:  # a corrupted channel: the host cannot be trusted any more
            self.kill(f"its frames were unreadable ({exc})")
        assert self.popen is not None
        try:
            returncode = self.popen.wait(_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:  # it closed its end but lingers
            self.kill("it closed its reply pipe but did not exit")
            returncode = self.popen.wait()
        self._threads[0].join(1.0)  # stderr: the whole tail, for the error message
        self._exited(returncode)

    def _on_frame(self, frame: Ready | Token | Loading | Loaded | Done | Failed) -> None:
        if isinstance(frame, Ready):
            self.ready.set_result(frame.pid)
            return
        with self._lock:
            pending = self._pending.get(frame.id)
            if pending is not None and isinstance(frame, Done | Failed):
                del self._pending[frame.id]
        if pending is None:
            return  # a call its caller gave up on
        if isinstance(frame, Token):
            pending.post(frame.text)
        elif isinstance(frame, Loading):
            pending.loading = True
        elif isinstance(frame, Loaded):
            pending.loading = False
            if pending.model is not None:
                self.loaded.add(pending.model.name)
                self.on_loaded(pending.model)
        elif isinstance(frame, Done):
            pending.post(frame)
        else:
            pending.post(RoostError.from_info(frame.error))

    def _exited(self, returncode: int) -> None:
        with self._lock:
            self.dead = True
            pending = list(self._pending.values())
            self._pending.clear()
        self._outbox.put(None)  # let the writer go
        if self.stopping and returncode == 0:
            log.debug("the %s engine process (pid %d) stopped", self.engine, self.pid)
        else:  # with what it last wrote (faulthandler's stacks after a native crash)
            tail = "\n".join(list(self.stderr)[-20:]) or "(nothing)"
            log.warning(
                "the %s engine process (pid %d) ended with return code %d%s; its stderr ends:\n%s",
                self.engine,
                self.pid,
                returncode,
                self.kill_note(),
                tail,
            )
        self.on_exit(self, returncode, pending)
        if not self.ready.done():  # the handler normally sets the reason
            self.ready.set_exception(RoostError(f"the {self.engine} engine process ended"))

    def _write(self, fd: int) -> None:
        try:
            while (data := self._outbox.get()) is not None:
                write_all(fd, data)
        except OSError:
            pass  # the host is gone: the reader reports how
        finally:
            os.close(fd)

    def _read_stderr(self, stream: Any) -> None:
        with stream:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line:
                    self.stderr.append(line)
                    log.info("[%s pid %d] %s", self.engine, self.pid, line)

    # --- messages ----------------------------------------------------------------------

    def stderr_hint(self, lines: int = 3) -> str:
        """``"; its stderr ends: ..."`` with the last lines the host wrote, or ``""``."""
        tail = list(self.stderr)[-lines:]
        return f"; its stderr ends: {' | '.join(tail)}" if tail else ""

    def kill_note(self) -> str:
        return f" (roost killed it: {self.kill_reason})" if self.kill_reason else ""
