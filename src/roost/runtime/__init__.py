"""The agent runtime: the SDK context agents program against, the runtimes that run agent
code, executors and the harness that starts runs.

Names are imported on first use (PEP 562), so agent code that imports the SDK
(``from roost.runtime import AgentContext``) does not load the platform's machinery (the
bus, the stores, the HTTP provider) with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roost._lazy import lazy_exports

if TYPE_CHECKING:
    from roost.runtime._context import KV, AgentContext, Vectors
    from roost.runtime._dispatch import BusDispatcher, Dispatcher, EngineRouter, dispatch_request
    from roost.runtime._events import EVENTS_STREAM, EventLog, EventProjection
    from roost.runtime._executor import (
        Executor,
        InProcessExecutor,
        RunInfo,
        RunStatus,
        completion,
        run_agent,
    )
    from roost.runtime._harness import (
        EventCallback,
        Harness,
        RunResult,
        RunStarted,
        StateRecorder,
        branch_history,
    )
    from roost.runtime._process import ProcessRuntime
    from roost.runtime._provider import ProviderEndpoint
    from roost.runtime._recorder import NullRecorder, Recorder
    from roost.runtime._runtimes import AgentRuntime, ChatRuntime, PythonRuntime, prompt_of
    from roost.runtime._wiring import AgentResolver, HistoryLoader, RunDefaults, RunWiring

#: Where each public name lives.
_MODULES: dict[str, str] = {
    "KV": "._context",
    "AgentContext": "._context",
    "Vectors": "._context",
    "BusDispatcher": "._dispatch",
    "Dispatcher": "._dispatch",
    "EngineRouter": "._dispatch",
    "dispatch_request": "._dispatch",
    "NullRecorder": "._recorder",
    "Recorder": "._recorder",
    "EVENTS_STREAM": "._events",
    "EventLog": "._events",
    "EventProjection": "._events",
    "Executor": "._executor",
    "InProcessExecutor": "._executor",
    "RunInfo": "._executor",
    "RunStatus": "._executor",
    "completion": "._executor",
    "run_agent": "._executor",
    "AgentResolver": "._wiring",
    "HistoryLoader": "._wiring",
    "RunDefaults": "._wiring",
    "RunWiring": "._wiring",
    "EventCallback": "._harness",
    "Harness": "._harness",
    "RunResult": "._harness",
    "RunStarted": "._harness",
    "StateRecorder": "._harness",
    "branch_history": "._harness",
    "ProcessRuntime": "._process",
    "ProviderEndpoint": "._provider",
    "AgentRuntime": "._runtimes",
    "ChatRuntime": "._runtimes",
    "PythonRuntime": "._runtimes",
    "prompt_of": "._runtimes",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULES)


__all__ = [
    "EVENTS_STREAM",
    "KV",
    "AgentContext",
    "AgentResolver",
    "AgentRuntime",
    "BusDispatcher",
    "ChatRuntime",
    "Dispatcher",
    "EngineRouter",
    "EventCallback",
    "EventLog",
    "EventProjection",
    "Executor",
    "Harness",
    "HistoryLoader",
    "InProcessExecutor",
    "NullRecorder",
    "ProcessRuntime",
    "ProviderEndpoint",
    "PythonRuntime",
    "Recorder",
    "RunDefaults",
    "RunInfo",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunWiring",
    "StateRecorder",
    "Vectors",
    "branch_history",
    "completion",
    "dispatch_request",
    "prompt_of",
    "run_agent",
]
