"""The activities of a durable run: everything with a side effect happens here.

Each method is one Temporal activity. They record what they do in the session DAG (recording
is idempotent by message id, so a retried activity does not duplicate nodes) and reach the
platform through the bus, exactly like the in-process executor does.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import sys
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from temporalio import activity

from roost.agents import parse_manifest
from roost.protocol import (
    CompleteMessage,
    EventMessage,
    InvalidRequestError,
    InvokeMessage,
    RequestMessage,
)
from roost.runtime import AgentContext, RunWiring, dispatch_request
from roost.stores import AgentRecord
from roost.workflows._errors import to_application_error
from roost.workflows._payloads import check_durable_size

BEGIN_RUN = "roost.begin_run"
SERVICE_CALL = "roost.service_call"
EMIT = "roost.emit"
STEP = "roost.step"
INVOKE_PROCESS = "roost.invoke_process"
FINISH_RUN = "roost.finish_run"


class RunActivities:
    """The activity implementations, bound to one process's bus, stores and runtimes."""

    def __init__(self, wiring: RunWiring, *, heartbeat_every_s: float = 2.0) -> None:
        if wiring.load_history is None:
            raise ValueError("a durable run loads its branch history: wiring.load_history is unset")
        self.wiring = wiring
        self.load_history = wiring.load_history
        self.process_runtime = wiring.runtimes["process"]
        self.heartbeat_every_s = heartbeat_every_s

    def all(self) -> list[Any]:
        """The activity callables to register with a Temporal worker."""
        return [
            self.begin_run,
            self.service_call,
            self.emit,
            self.step,
            self.invoke_process,
            self.finish_run,
        ]

    @activity.defn(name=BEGIN_RUN)
    async def begin_run(self, invocation: dict[str, Any]) -> dict[str, Any]:
        """Record the invoke and load what the run needs: the agent and the branch history."""
        with _failures():
            inv = msgspec.convert(invocation, InvokeMessage)
            invoke_node = await self.wiring.recorder.record(inv)
            record = await self.wiring.resolve_agent(inv.agent, inv.agent_version)
            parse_manifest(record.manifest, f"{record.path}/agent.toml")  # fail early if bad
            history = await self.load_history(inv, invoke_node)
            begun = {"agent": msgspec.to_builtins(record), "history": history}
            check_durable_size(begun, "the run's agent record and branch history")
            return begun

    @activity.defn(name=SERVICE_CALL)
    async def service_call(self, request: dict[str, Any]) -> dict[str, Any]:
        """One platform service call: record, send over the bus, record the answer."""
        with _failures():
            req = msgspec.convert(request, RequestMessage)
            async with self._heartbeats():
                w = self.wiring
                answer = await dispatch_request(w.bus, w.recorder, req, w.router, w.signer)
            check_durable_size(answer, f"the answer to {req.service}.{req.op}")
            return answer

    @activity.defn(name=EMIT)
    async def emit(self, event: dict[str, Any]) -> None:
        """Publish a run event live and keep its durable copy in the session DAG."""
        with _failures():
            await self.wiring.events.emit(msgspec.convert(event, EventMessage))

    @activity.defn(name=STEP)
    async def step(self, call: dict[str, Any]) -> Any:
        """Run an agent's ``ctx.step`` function (``module:qualname``) once."""
        with _failures():
            fn = _resolve_function(call["fn"])
            result = fn(*call.get("args", []), **call.get("kwargs", {}))
            if inspect.isawaitable(result):
                result = await result
            check_durable_size(msgspec.to_builtins(result), f"the result of step {call['fn']}")
            return result

    @activity.defn(name=INVOKE_PROCESS)
    async def invoke_process(self, call: dict[str, Any]) -> dict[str, Any]:
        """One invocation of a process-runtime agent (its own calls are recorded as usual)."""
        with _failures():
            inv = msgspec.convert(call["invocation"], InvokeMessage)
            record = msgspec.convert(call["agent"], AgentRecord)
            manifest = parse_manifest(record.manifest, f"{record.path}/agent.toml")
            dispatcher = self.wiring.dispatcher(inv, record.version)
            ctx = AgentContext(
                inv,
                dispatcher,
                chat_model=call.get("chat_model", ""),
                embedding_model=call.get("embedding_model", ""),
                history=[tuple(pair) for pair in call.get("history", [])],
            )
            async with self._heartbeats():
                output = await self.process_runtime.run(ctx, record, manifest)
            result = {"output": output, "usage": msgspec.to_builtins(dispatcher.usage)}
            check_durable_size(msgspec.to_builtins(result), f"the output of agent {inv.agent!r}")
            return result

    @activity.defn(name=FINISH_RUN)
    async def finish_run(self, complete: dict[str, Any]) -> None:
        """Record the run's completion."""
        with _failures():
            await self.wiring.recorder.record(msgspec.convert(complete, CompleteMessage))

    @contextlib.asynccontextmanager
    async def _heartbeats(self) -> AsyncIterator[None]:
        """Heartbeat while a long call runs, so a dead worker is noticed within the
        heartbeat timeout rather than the call's whole timeout."""
        if not activity.info().heartbeat_timeout:
            yield
            return

        async def beat() -> None:
            while True:  # a call shorter than one interval sends none
                await asyncio.sleep(self.heartbeat_every_s)
                activity.heartbeat()

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.contextmanager
def _failures() -> Any:
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise to_application_error(exc) from exc


def _resolve_function(ref: str) -> Any:
    module_name, _, qualname = ref.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InvalidRequestError(f"ctx.step: cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise InvalidRequestError(f"ctx.step: {ref!r} does not exist")
    return target
