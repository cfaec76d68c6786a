"""Executors run invocations. The in-process executor is non-durable; a durable executor
(Temporal) implements the same :class:`Executor` contract."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from roost.agents import AgentManifest, parse_manifest
from roost.bus import Bus
from roost.protocol import (
    AgentError,
    CompleteMessage,
    ErrorInfo,
    InvokeMessage,
    RoostError,
    ServiceTimeoutError,
)
from roost.protocol._errors import CANCELLED, INTERNAL
from roost.runtime._context import AgentContext
from roost.runtime._dispatch import BusDispatcher, Recorder
from roost.runtime._runtimes import AgentRuntime
from roost.stores._records import AgentRecord

log = logging.getLogger("roost.runtime")

AgentResolver = Callable[[str], Awaitable[AgentRecord]]
HistoryLoader = Callable[[InvokeMessage], Awaitable[list[tuple[Any, Any]]]]


class Executor(Protocol):
    """Runs one invocation to its completion (never raises for agent failures: the
    :class:`CompleteMessage` carries them)."""

    async def execute(self, invocation: InvokeMessage) -> CompleteMessage: ...

    async def close(self) -> None: ...


class InProcessExecutor:
    """Runs agents in this process: fast, simple, not durable (a crash loses the run)."""

    def __init__(
        self,
        bus: Bus,
        recorder: Recorder,
        resolve_agent: AgentResolver,
        runtimes: dict[str, AgentRuntime],
        *,
        load_history: HistoryLoader | None = None,
        default_chat_model: str = "",
        default_embedding_model: str = "",
        request_timeout_s: float = 30.0,
        infer_timeout_s: float = 120.0,
    ) -> None:
        self.bus = bus
        self.recorder = recorder
        self.resolve_agent = resolve_agent
        self.runtimes = runtimes
        self.load_history = load_history
        self.default_chat_model = default_chat_model
        self.default_embedding_model = default_embedding_model
        self.request_timeout_s = request_timeout_s
        self.infer_timeout_s = infer_timeout_s

    async def execute(self, invocation: InvokeMessage) -> CompleteMessage:
        started = time.perf_counter()
        await self.recorder.record(invocation)
        dispatcher = BusDispatcher(self.bus, self.recorder, invocation)
        output: Any = None
        error: ErrorInfo | None = None
        try:
            record = await self.resolve_agent(invocation.agent)
            manifest = parse_manifest(record.manifest, f"{record.path}/agent.toml")
            ctx = await self._context(invocation, dispatcher, manifest)
            runtime = self.runtimes.get(manifest.runtime)
            if runtime is None:
                raise AgentError(f"no runtime {manifest.runtime!r} is available here")
            timeout = manifest.timeout_s or invocation.timeout_s
            try:
                output = await asyncio.wait_for(runtime.run(ctx, record, manifest), timeout)
            except TimeoutError:
                raise ServiceTimeoutError(
                    f"agent {invocation.agent!r} did not finish within {timeout:g}s"
                ) from None
        except RoostError as exc:
            error = exc.to_info()
        except asyncio.CancelledError:
            error = ErrorInfo(code=CANCELLED, message="the run was cancelled")
            await self._complete(invocation, started, dispatcher, None, error)
            raise
        except Exception as exc:
            log.exception("agent %s failed", invocation.agent)
            error = ErrorInfo(code=AgentError.code, message=f"{type(exc).__name__}: {exc}")
        return await self._complete(invocation, started, dispatcher, output, error)

    async def _context(
        self, invocation: InvokeMessage, dispatcher: BusDispatcher, manifest: AgentManifest
    ) -> AgentContext:
        history = await self.load_history(invocation) if self.load_history else []
        return AgentContext(
            invocation,
            dispatcher,
            chat_model=manifest.models.chat or self.default_chat_model,
            embedding_model=manifest.models.embedding or self.default_embedding_model,
            request_timeout_s=self.request_timeout_s,
            infer_timeout_s=self.infer_timeout_s,
            history=history,
        )

    async def _complete(
        self,
        invocation: InvokeMessage,
        started: float,
        dispatcher: BusDispatcher,
        output: Any,
        error: ErrorInfo | None,
    ) -> CompleteMessage:
        output = _jsonable(output)
        complete = CompleteMessage(
            session=invocation.session,
            branch=invocation.branch,
            correlation_id=invocation.id,
            trace=invocation.trace,
            agent=invocation.agent,
            ok=error is None,
            output=output,
            error=error,
            usage=dispatcher.usage,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        await self.recorder.record(complete)
        return complete

    async def close(self) -> None:
        for runtime in self.runtimes.values():
            await runtime.close()


def _jsonable(value: Any) -> Any:
    import msgspec

    try:
        return msgspec.to_builtins(value)
    except TypeError:
        return str(value)


__all__ = ["INTERNAL", "AgentResolver", "Executor", "HistoryLoader", "InProcessExecutor"]
