"""What every platform offers its clients: :class:`PlatformAPI`.

The CLI (and, next, the API server) is typed against this protocol, not against one
implementation: :class:`~roost.platform.Platform` runs everything in this process, and
:class:`~roost.platform.RemotePlatform` is a client of a deployment over gRPC. A method
added to one and not the other fails type checking wherever a client calls it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from roost.agents import OutputCallback
from roost.protocol import CompleteMessage
from roost.runtime import EventCallback, RunInfo, RunResult, RunStarted
from roost.stores import (
    AgentRecord,
    AvailableModel,
    Branch,
    ModelRecord,
    Node,
    SecretStore,
    Session,
)


class RunControl(Protocol):
    """Runs after they start: inspect, wait for, cancel and answer them (the harness)."""

    async def wait(
        self,
        run_id: str,
        *,
        session: str,
        timeout_s: float | None = None,
        on_event: EventCallback | None = None,
    ) -> CompleteMessage:
        """Wait for run ``run_id`` of ``session`` to complete, streaming its events."""
        ...

    async def cancel(self, run_id: str) -> None:
        """Cancel a running run (an error if it has ended)."""
        ...

    async def answer(self, run_id: str, text: str) -> None:
        """Answer the question a run waits on (``ctx.ask``)."""
        ...

    async def get_run(self, run_id: str) -> RunInfo:
        """One run's status, session, question and times."""
        ...

    async def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        """The newest runs first."""
        ...


class PlatformAPI(Protocol):
    """Agents, runs, sessions, models and secrets of one roost, local or remote."""

    @property
    def harness(self) -> RunControl:
        """Started runs: inspect, wait for, cancel, answer."""
        ...

    @property
    def secrets(self) -> SecretStore:
        """Secrets, encrypted at rest (values never listed)."""
        ...

    async def close(self) -> None:
        """Release connections, workers and servers this platform started."""
        ...

    # --- agents -----------------------------------------------------------------------

    async def deploy(
        self, path: Path | str, *, on_output: OutputCallback | None = None
    ) -> AgentRecord:
        """Validate the agent folder (or its ``agent.toml``) at ``path`` against the platform,
        install its dependencies (their output goes to ``on_output``) and deploy it as the
        agent's next version. Raises a :class:`~roost.agents.ManifestError` naming the file,
        the field and the problem."""
        ...

    async def deploy_bundle(
        self,
        bundle: bytes,
        *,
        source: str = "",
        on_output: OutputCallback | None = None,
        tenant: str | None = None,
    ) -> AgentRecord:
        """Deploy an agent folder packed by :func:`~roost.agents.pack_folder` (as a client
        uploads it); ``source`` names it in errors. Otherwise as :meth:`deploy`.

        ``tenant`` deploys into that tenant's namespace (:mod:`roost.protocol.tenants`); only
        a platform over its own stores chooses it. A client of a server deploys into its
        credentials' tenant, and refuses another."""
        ...

    async def get_agent(self, name: str) -> AgentRecord:
        """The latest deployed version of agent ``name``."""
        ...

    async def list_agents(self) -> list[AgentRecord]: ...

    async def delete_agent(self, name: str) -> None: ...

    # --- runs -------------------------------------------------------------------------

    async def run(
        self,
        agent: str,
        input: Any,
        *,
        session: str | None = None,
        branch: str | None = None,
        timeout_s: float | None = None,
        on_event: EventCallback | None = None,
        run_id: str | None = None,
        owner: str = "",
    ) -> RunResult:
        """Run ``agent`` on ``input`` and wait for its result.

        ``session`` continues a session (name or id; a new one when None) on ``branch``
        (its main branch when None); ``on_event`` gets the run's events live; ``run_id``
        names the run (so a client can steer it while it runs); ``owner`` is the user whose
        run it is (an API server passes the caller): its daemon tools reach that user's
        tools daemon."""
        ...

    async def start(
        self,
        agent: str,
        input: Any,
        *,
        session: str | None = None,
        branch: str | None = None,
        timeout_s: float | None = None,
        run_id: str | None = None,
        owner: str = "",
    ) -> RunStarted:
        """Start a run of ``agent`` on ``input`` and return at once: its session, branch and
        id, to follow it with :meth:`RunControl.wait`. Arguments as for :meth:`run`; a
        ``run_id`` that already exists returns that run instead of starting another."""
        ...

    # --- sessions ---------------------------------------------------------------------

    async def list_sessions(self, agent: str | None = None, limit: int = 50) -> list[Session]: ...

    async def get_session(self, ref: str) -> Session:
        """A session by name or id."""
        ...

    async def list_branches(self, session: str) -> list[Branch]: ...

    async def session_nodes(self, session: str, branch: str | None = None) -> list[Node]:
        """The nodes of one branch (the main branch when None), oldest first."""
        ...

    async def fork(self, session: str, from_node: str, branch: str | None = None) -> Branch:
        """A new branch of ``session`` from node ``from_node`` (id or unique prefix)."""
        ...

    async def promote(self, session: str, branch: str) -> None:
        """Make ``branch`` the session's main branch."""
        ...

    # --- models -----------------------------------------------------------------------

    async def list_models(self) -> list[ModelRecord]: ...

    async def add_model(
        self,
        *,
        name: str,
        engine: str,
        target: str,
        kind: str = "chat",
        base_url: str = "",
        api_key_secret: str = "",
        dimension: int = 0,
        replace: bool = False,
    ) -> ModelRecord:
        """Register a model (``replace``: overwrite one of the same name)."""
        ...

    async def remove_model(self, name: str) -> None: ...

    async def available_models(
        self, engine: str | None = None, base_url: str = ""
    ) -> list[AvailableModel]:
        """What each engine (or ``engine`` at ``base_url``) can serve."""
        ...
