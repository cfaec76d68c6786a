"""The agent runtime: the SDK context agents program against, the runtimes that run agent
code, executors and the harness that starts runs."""

from roost.runtime._context import KV, AgentContext, Vectors
from roost.runtime._dispatch import (
    BusDispatcher,
    Dispatcher,
    EngineRouter,
    NullRecorder,
    Recorder,
)
from roost.runtime._events import EVENTS_STREAM, EventLog, EventProjection
from roost.runtime._executor import AgentResolver, Executor, HistoryLoader, InProcessExecutor
from roost.runtime._harness import EventCallback, Harness, RunResult, StateRecorder
from roost.runtime._process import ProcessRuntime
from roost.runtime._provider import ProviderEndpoint
from roost.runtime._runtimes import AgentRuntime, ChatRuntime, PythonRuntime, prompt_of

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
    "RunResult",
    "StateRecorder",
    "Vectors",
    "prompt_of",
]
