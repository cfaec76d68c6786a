"""The dependencies of running an agent, gathered once per process.

Every executor needs the same things to run an invocation: the bus its calls travel on, the
recorder that writes them into the session DAG, the event log, the engine router, how to
resolve an agent and load its branch history, the runtimes, and the defaults a run falls back
on. The platform builds one :class:`RunWiring`; the in-process executor and the durable
run's activities both take it, so a call is dispatched, recorded and routed the same way
however the run executes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from roost.auth import GrantSigner
from roost.bus import Bus
from roost.protocol import InvokeMessage
from roost.runtime._dispatch import BusDispatcher, EngineRouter
from roost.runtime._events import EventLog
from roost.runtime._recorder import Recorder
from roost.runtime._runtimes import AgentRuntime
from roost.stores import AgentRecord, Node

AgentResolver = Callable[[str, int], Awaitable[AgentRecord]]
"""``(name, version)`` to the agent's record (version 0: the latest)."""
HistoryLoader = Callable[[InvokeMessage, Node | None], Awaitable[list[tuple[Any, Any]]]]
"""The earlier (input, output) pairs of an invocation's branch, given its recorded node."""


@dataclass(frozen=True, kw_only=True)
class RunDefaults:
    """What a run uses when its agent's manifest does not say."""

    chat_model: str = ""
    embedding_model: str = ""
    request_timeout_s: float = 30.0
    """Timeout of one platform service call."""
    infer_timeout_s: float = 120.0
    """Timeout of one model call (longer: generation is slow)."""
    max_turns: int = 8
    """Model turns of a chat agent's tool loop."""


@dataclass(frozen=True, kw_only=True)
class RunWiring:
    """Everything an executor needs to run invocations in this process."""

    bus: Bus
    recorder: Recorder
    resolve_agent: AgentResolver
    runtimes: Mapping[str, AgentRuntime]
    events: EventLog
    load_history: HistoryLoader | None = None
    router: EngineRouter | None = None
    signer: GrantSigner | None = None
    """Stamps each request with its run's grant (when the deployment checks grants)."""
    defaults: RunDefaults = field(default_factory=RunDefaults)

    def dispatcher(self, invocation: InvokeMessage, agent_version: int = 0) -> BusDispatcher:
        """The dispatcher of one run: its calls recorded, routed and evented like every other."""
        return BusDispatcher(
            self.bus,
            self.recorder,
            invocation,
            agent_version,
            events=self.events,
            router=self.router,
            signer=self.signer,
        )


__all__ = ["AgentResolver", "HistoryLoader", "RunDefaults", "RunWiring"]
