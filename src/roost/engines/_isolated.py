"""An embedded engine in a child process: a native crash is an error, never the caller's death.

:class:`IsolatedEngine` speaks the :class:`~roost.engines.ChatEngine` /
:class:`~roost.engines.EmbeddingEngine` protocols and forwards every call to an engine host
process (:mod:`roost.engines._host`) that runs the in-process engine. Calls are multiplexed
over a pipe; tokens stream back as they are generated; cancelling a caller cancels its call
in the host; a roost error raised there is raised here with the same class and code.

When the host dies (SIGSEGV, SIGABRT, SIGKILL, the OOM killer), every call in flight fails
with a retryable :class:`~roost.protocol.UpstreamError` naming the engine, the pid, the
signal and the models, and the next call starts a fresh host, which loads its model again.
Crash loops are contained two ways:

* restarts back off: none for the first crash, then ``backoff_s`` doubling up to
  ``backoff_max_s`` while crashes follow each other with no successful call in between;
* a host that dies while *loading* a model ``max_load_crashes`` times in a row makes that
  model fail fast with a non-retryable ``engine_crash_loop`` error naming its file, until the
  file changes (or the engine is closed): retrying a file that kills the loader is pointless.

A host that cannot start (a broken environment, an import error) fails the calls waiting for
it with a non-retryable ``engine_start_failed`` error quoting its stderr; one that does not
become ready within ``start_timeout_s`` is killed and reported as a timeout. The process
plumbing (the spawn thread, the pipes, the reader/writer threads) is in
:mod:`roost.engines._child`; this module is the engine and its crash policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from roost.engines._base import TokenCallback
from roost.engines._child import Child, Pending
from roost.engines._defaults import default_models, resolve_gguf, resolve_model_dir
from roost.engines._frames import Call, Done, Op
from roost.engines._host import HOSTED_ENGINES
from roost.protocol import (
    ChatRequest,
    ChatResult,
    EmbedResult,
    ErrorCode,
    RoostError,
    ServiceTimeoutError,
    ServiceUnavailableError,
    UpstreamError,
)
from roost.stores import ModelRecord

ENGINE_START_FAILED = ErrorCode.ENGINE_START_FAILED
"""Error code: an engine host process exited before it was ready (not retryable)."""
ENGINE_CRASH_LOOP = ErrorCode.ENGINE_CRASH_LOOP
"""Error code: the engine process died loading this model too many times (not retryable)."""


class IsolatedEngine:
    """The embedded engine ``engine`` (``llama-cpp`` or ``sentence-transformers``) run in a
    child process (see the module docs). ``options`` are the in-process engine's constructor
    keywords (``n_ctx``, ``n_threads``, ``seed`` for llama-cpp; ``threads`` for
    sentence-transformers). The host starts on the first call, not here.
    """

    def __init__(
        self,
        engine: str,
        options: dict[str, Any] | None = None,
        *,
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
        max_load_crashes: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 10.0,
        python: Sequence[str] | None = None,
    ) -> None:
        """``python``: the command that runs a Python with roost (default: this
        interpreter); the host's arguments follow it."""
        if engine not in HOSTED_ENGINES:
            raise ValueError(f"IsolatedEngine runs {' or '.join(HOSTED_ENGINES)}, not {engine!r}")
        if start_timeout_s <= 0 or stop_timeout_s <= 0 or max_load_crashes < 1:
            raise ValueError("IsolatedEngine: timeouts must be > 0 and max_load_crashes >= 1")
        self.name = engine
        self.options = dict(options or {})
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.max_load_crashes = max_load_crashes
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.python = list(python) if python else None
        self.restarts = 0  # hosts started after the first
        self._lock = threading.Lock()  # the state below: touched by callers' loops and readers
        self._child: Child | None = None
        self._started = 0
        self._crashes = 0  # consecutive crashes with no successful call in between
        self._last_exit = 0.0
        self._load_crashes: dict[str, int] = {}  # model file -> consecutive crashes loading it
        self._blocked: dict[str, tuple[tuple[int, int] | None, str]] = {}  # file -> stat, why

    # --- the engine protocols ----------------------------------------------------------

    async def chat(
        self, model: ModelRecord, request: ChatRequest, *, on_token: TokenCallback | None = None
    ) -> ChatResult:
        """Answer ``request`` in the host; ``on_token`` gets the text as it is generated."""
        done = await self._call("chat", model, request=request, on_token=on_token)
        assert done.chat is not None
        return done.chat

    async def embed(self, model: ModelRecord, inputs: list[str]) -> EmbedResult:
        """One vector per input, computed in the host."""
        done = await self._call("embed", model, inputs=list(inputs))
        assert done.embed is not None
        return done.embed

    async def load(self, model: ModelRecord) -> int | None:
        """Load ``model`` in the host now; its dimension for an embedding model."""
        return (await self._call("load", model)).dimension

    async def list_models(self) -> list[str]:
        """The host's answer when one runs; otherwise the models shipped in installed packages
        (what a fresh host would say), without starting a process for it."""
        with self._lock:
            child = self._child
        if child is None or not child.is_ready:
            return sorted({m.target for m in default_models() if m.engine == self.name})
        return list((await self._call("list_models", None)).models or [])

    async def close(self) -> None:
        """Stop the host (it frees its models); calls in flight fail. Usable again after."""
        with self._lock:
            child, self._child = self._child, None
            self._load_crashes.clear()
            self._blocked.clear()
            self._crashes = 0
        if child is not None:
            await asyncio.to_thread(child.stop, self.stop_timeout_s)

    @property
    def pid(self) -> int | None:
        """The pid of the running host, if any."""
        with self._lock:
            child = self._child
        return child.pid if child is not None and child.pid and not child.dead else None

    # --- calls -------------------------------------------------------------------------

    async def _call(
        self,
        op: Op,
        model: ModelRecord | None,
        *,
        request: ChatRequest | None = None,
        inputs: list[str] | None = None,
        on_token: TokenCallback | None = None,
    ) -> Done:
        if model is not None:
            self._check_blocked(model)
        for _ in range(3):  # a host that died just after it was ready: take the next one
            child = await self._ready_child()
            pending = child.open(op, model, asyncio.get_running_loop())
            if pending is not None:
                break
        else:
            raise ServiceUnavailableError(
                f"the {self.name} engine process keeps ending before a call starts",
                engine=self.name,
            )
        child.send(
            Call(
                id=pending.id,
                op=op,
                model=model,
                request=request,
                inputs=inputs or [],
                stream=on_token is not None,
            )
        )
        try:
            while True:
                item = await pending.queue.get()
                if isinstance(item, str):
                    if on_token is not None:
                        await on_token(item)
                elif isinstance(item, Done):
                    with self._lock:
                        self._crashes = 0
                    return item
                else:
                    raise item
        except BaseException:
            if not pending.finished:  # cancelled, or the token callback failed
                child.cancel(pending.id)
            raise
        finally:
            child.forget(pending.id)

    async def _ready_child(self) -> Child:
        while True:
            with self._lock:
                child = self._child
                delay = 0.0
                if child is None or child.dead:
                    delay = self._restart_delay()
                    if delay <= 0:
                        child = self._child = self._new_child()
            if delay <= 0 and child is not None:
                break
            await asyncio.sleep(delay)
        try:
            await asyncio.wait_for(asyncio.wrap_future(child.ready), self.start_timeout_s)
        except RoostError as exc:  # its start failed: a copy for each waiter
            raise RoostError.from_info(exc.to_info()) from None
        except TimeoutError:
            child.kill(f"it was not ready within {self.start_timeout_s:g}s")
            raise ServiceTimeoutError(
                f"the {self.name} engine process (pid {child.pid}) did not start within "
                f"{self.start_timeout_s:g}s{child.stderr_hint()}",
                engine=self.name,
                pid=child.pid,
            ) from None
        return child

    def _new_child(self) -> Child:
        self._started += 1
        if self._started > 1:
            self.restarts += 1
        return Child.spawn(
            self.name, self.options, self._on_exit, self.note_loaded, python=self.python
        )

    def _restart_delay(self) -> float:
        if self._crashes < 2:
            return 0.0
        backoff = min(self.backoff_s * 2.0 ** (self._crashes - 2), self.backoff_max_s)
        return self._last_exit + backoff - time.monotonic()

    # --- crashes -----------------------------------------------------------------------

    def _on_exit(self, child: Child, returncode: int, pending: list[Pending]) -> None:
        """A host ended (called on its reader thread): fail the calls it had in flight."""
        signame, how = _describe(returncode)
        with self._lock:
            if self._child is child:
                self._child = None
            if child.stopping and not pending:
                return
            self._last_exit = time.monotonic()
            # crashes back off restarts; a host that cannot start fails each call at once
            if not child.stopping and (child.is_ready or signame is not None):
                self._crashes += 1
        if not child.is_ready:
            error: RoostError = self._start_error(child, how, signame)
            child.ready.set_exception(error)
            for call in pending:
                call.post(self._start_error(child, how, signame))
            return
        # one crash counts once per model file, however many calls were loading it
        verdicts = {
            self._file(call.model): self._count_load_crash(call.model)
            for call in pending
            if call.loading and call.model is not None and not child.stopping
        }
        for call in pending:
            error = self._crash_error(child, how, signame, returncode, call, pending, verdicts)
            call.post(error)

    def _start_error(self, child: Child, how: str, signame: str | None) -> RoostError:
        text = (
            f"the {self.name} engine process (pid {child.pid}) {how} before it was ready"
            f"{child.kill_note()}{child.stderr_hint()}"
        )
        details: dict[str, Any] = {"engine": self.name, "pid": child.pid, "signal": signame}
        if signame is not None:  # killed from outside (the OOM killer, a timeout): may pass
            return UpstreamError(text, **details)
        return RoostError(text, code=ENGINE_START_FAILED, **details)

    def _crash_error(
        self,
        child: Child,
        how: str,
        signame: str | None,
        returncode: int,
        call: Pending,
        pending: list[Pending],
        verdicts: dict[str, str | None],
    ) -> RoostError:
        """The error of ``call``; ``verdicts``: the block message (or ``None``) of each model
        file a call was loading."""
        names = sorted({p.model.name for p in pending if p.model is not None})
        names = names or sorted(child.loaded)
        models = ", ".join(repr(n) for n in names)
        serving = f" while serving model{'s' if len(names) > 1 else ''} {models}" if names else ""
        prefix = f"the {self.name} engine process (pid {child.pid}) {how}"
        details: dict[str, Any] = {
            "engine": self.name,
            "pid": child.pid,
            "signal": signame,
            "exit_code": returncode,
            "models": names,
        }
        if child.stopping:
            return ServiceUnavailableError(f"{prefix}: the engine was closed", **details)
        if call.loading and call.model is not None:
            blocked = verdicts.get(self._file(call.model))
            if blocked is not None:
                return RoostError(f"{prefix}: {blocked}", code=ENGINE_CRASH_LOOP, **details)
            serving = f" while loading model {call.model.name!r} ({self._file(call.model)})"
        hint = ""
        if signame == "SIGILL":
            hint = " (an illegal instruction: a native build for another CPU?)"
        return UpstreamError(
            f"{prefix}{hint}{serving}; it is restarted on the next call{child.kill_note()}",
            **details,
        )

    def _count_load_crash(self, model: ModelRecord) -> str | None:
        """Count a crash while loading ``model``; the block message once it is one too many."""
        path = self._file(model)
        with self._lock:
            if path in self._blocked:
                return self._blocked[path][1]
            count = self._load_crashes[path] = self._load_crashes.get(path, 0) + 1
            if count < self.max_load_crashes:
                return None
            why = (
                f"it died while loading model {model.name!r} from {path} {count} times in a "
                "row, so roost does not load that file again until it changes: check the file "
                "and the engine's native build (roost doctor)"
            )
            self._blocked[path] = (_stat(path), why)
            return why

    def _check_blocked(self, model: ModelRecord) -> None:
        if not self._blocked:
            return
        path = self._file(model)
        with self._lock:
            entry = self._blocked.get(path)
            if entry is None:
                return
            if _stat(path) != entry[0]:  # the file changed: give it another chance
                del self._blocked[path]
                self._load_crashes.pop(path, None)
                return
        raise RoostError(
            f"the {self.name} engine process {entry[1]}",
            code=ENGINE_CRASH_LOOP,
            engine=self.name,
            model=model.name,
        )

    def note_loaded(self, model: ModelRecord) -> None:
        """A host loaded ``model``: its crash count starts over."""
        path = self._file(model)
        with self._lock:
            self._load_crashes.pop(path, None)

    def _file(self, model: ModelRecord) -> str:
        found = (resolve_gguf if self.name == "llama-cpp" else resolve_model_dir)(model.target)
        return str(found) if found is not None else model.target


def _describe(returncode: int) -> tuple[str | None, str]:
    """``(signal name, "died of SIGSEGV" / "exited with code 3")`` of a return code."""
    from roost._proc import describe_returncode

    _, signame, _ = describe_returncode(returncode)
    if signame is not None:
        return signame, f"died of {signame}"
    return None, f"exited with code {returncode}"


def _stat(path: str) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    return None
