"""The platform assembled in one process: stores, bus, services, runtimes, harness.

This is what ``roost`` uses in local mode (memory bus, SQLite, embedded engines), and what
``roostd`` runs to serve the platform services on NATS. The CLI only talks to this facade.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from roost.agents import OutputCallback, load_entry, parse_manifest
from roost.auth import load_signer, load_verifier
from roost.bus import Bus, create_bus
from roost.config import Settings
from roost.engines import EngineSet, default_models
from roost.gateway import DaemonCaller
from roost.platform._deploy import AgentDeployer
from roost.platform._models import ModelCatalog, model_record, register_defaults
from roost.platform._sessions import fork_session
from roost.protocol import (
    AgentCall,
    CompleteMessage,
    InvalidRequestError,
    NotFoundError,
    RequestMessage,
    tenants,
)
from roost.runtime import (
    EVENTS_STREAM,
    AgentRuntime,
    ChatRuntime,
    EngineRouter,
    EventCallback,
    EventLog,
    EventProjection,
    Executor,
    Harness,
    InProcessExecutor,
    ProcessRuntime,
    ProviderEndpoint,
    PythonRuntime,
    RunDefaults,
    RunResult,
    RunStarted,
    RunWiring,
    StateRecorder,
    branch_history,
)
from roost.services import ServiceWorker
from roost.services.agents import AgentCallService
from roost.services.embedding import EmbeddingService
from roost.services.inference import InferenceService
from roost.services.kv import KvService
from roost.services.tools import Daemons, ToolService
from roost.services.vectors import VectorService
from roost.stores import (
    AgentRecord,
    AvailableModel,
    Branch,
    LruCache,
    ModelRecord,
    Node,
    SecretStore,
    Session,
    Stores,
    open_stores,
)
from roost.tools import DeclaredTool, Tool, builtin_tools, tool_from_function
from roost.toolsd import DaemonPaths, HostConfig, LocalDaemon

log = logging.getLogger("roost.platform")

LOCAL_SERVICES = ("infer", "embed", "kv", "vec", "tool", "agent")


class Platform:
    """One process's view of roost. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, settings: Settings, stores: Stores, bus: Bus, engines: EngineSet) -> None:
        self.settings = settings
        self.stores = stores
        self.bus = bus
        self.engines = engines
        self.workers: list[ServiceWorker] = []
        self.models = ModelCatalog(stores.registry, engines, self._secret_or_none, default_models)
        self.deployer = AgentDeployer(
            settings,
            stores.registry,
            bus,
            get_model=self.get_model,
            list_models=self.list_models,
        )
        self.provider = ProviderEndpoint()
        self.runtimes: dict[str, AgentRuntime] = {
            "python": PythonRuntime(),
            "chat": ChatRuntime(max_turns=settings.runtime.max_turns),
            "process": ProcessRuntime(
                self.provider,
                start_timeout_s=settings.runtime.process_start_timeout_s,
                prepare=self.deployer.materialize,  # the node running a process has its files
            ),
        }
        # one recorder of this process's protocol messages into the session DAG
        self.recorder = StateRecorder(stores.state)
        self.router = EngineRouter(self.get_model)
        self.events = EventLog(
            bus, self.recorder, via_stream=settings.runtime.record_events == "projection"
        )
        # what every executor of this process runs agents with, in-process or durable
        self.wiring = RunWiring(
            bus=bus,
            recorder=self.recorder,
            resolve_agent=self.get_agent,
            runtimes=self.runtimes,
            events=self.events,
            load_history=functools.partial(branch_history, stores.state),
            router=self.router,
            signer=load_signer(settings.bus.grant_key_file),
            defaults=RunDefaults(
                chat_model=settings.inference.default_model,
                embedding_model=settings.embedding.default_model,
                request_timeout_s=settings.runtime.request_timeout_s,
                infer_timeout_s=settings.inference.timeout_s,
                max_turns=settings.runtime.max_turns,
            ),
        )
        self.executor: Executor = InProcessExecutor(self.wiring)
        self.harness = Harness(
            bus, stores.state, self.executor, run_timeout_s=settings.runtime.run_timeout_s
        )
        self._tool_cache: dict[tuple[str, int], dict[str, DeclaredTool]] = {}
        self._daemons: Daemons | None = None
        self._local_daemon: LocalDaemon | None = None
        self._agent_cache: LruCache[tuple[str, int], AgentRecord] = LruCache(256)
        self.projection: EventProjection | None = None

    # --- lifecycle ---------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        start_services: bool = True,
        worker: bool = True,
        runs: bool = True,
        stores: Stores | None = None,
    ) -> Platform:
        """Open stores (migrating them), connect the bus and, if asked, start the services.

        With the memory bus the services must run in this process, so they always start;
        with NATS they start only if asked (``roostd`` serves them to other processes).
        With durable runs (``[workflows] engine = "temporal"``) this connects to Temporal
        (starting the embedded server if no address is configured) and, with ``worker``,
        executes runs in this process too. ``runs=False`` skips Temporal altogether, for
        processes that never start or inspect runs (the CLI's registry and session commands).
        ``stores`` replaces the stores opened from the settings' database (a worker without
        database access passes :func:`~roost.platform.remote_stores`); the platform closes
        them.
        """
        settings.home.mkdir(parents=True, exist_ok=True)
        if stores is None:
            stores = await open_stores(settings.database_url, settings.home)
        try:
            await register_defaults(stores.registry, default_models())
            bus = create_bus(
                settings.bus.backend,
                settings.bus.url,
                user=settings.bus.user,
                password=settings.bus.password(),
            )
            await bus.connect()
            if settings.runtime.record_events == "projection":
                await bus.add_stream(EVENTS_STREAM)  # events are published to it
        except BaseException:
            await stores.close()
            raise
        platform = cls(settings, stores, bus, EngineSet.from_settings(settings))
        try:
            if settings.workflows.engine == "temporal" and (runs or worker):
                await platform._use_temporal(worker=worker)
            if start_services or settings.bus.backend == "memory":
                # storage services only where this process has the stores
                await platform.start_services(
                    name
                    for name in LOCAL_SERVICES
                    if not (name == "kv" and stores.kv is None)
                    and not (name == "vec" and stores.vectors is None)
                )
                if settings.runtime.record_events == "projection":
                    # one process, one bus: the projection runs here like the services
                    platform.projection = EventProjection(bus, platform.recorder)
                    await platform.projection.start()
        except BaseException:
            await platform.close()
            raise
        return platform

    async def _use_temporal(self, *, worker: bool) -> None:
        from roost.workflows import (
            RunActivities,
            RunOptions,
            TemporalExecutor,
            connect_temporal,
            ensure_embedded_temporal,
        )

        config = self.settings.workflows
        address = config.temporal_address
        if not address:
            address = await asyncio.to_thread(
                ensure_embedded_temporal, self.settings.home, namespace=config.namespace
            )
        client = await connect_temporal(address, config.namespace, timeout=config.connect_timeout_s)
        activities = RunActivities(
            self.wiring, heartbeat_every_s=min(2.0, config.heartbeat_timeout_s / 3)
        )
        options = RunOptions.of(
            self.wiring.defaults,
            max_attempts=config.max_attempts,
            heartbeat_timeout_s=config.heartbeat_timeout_s,
        )
        executor = TemporalExecutor(
            client, task_queue=config.task_queue, options=options, activities=activities
        )
        await self.executor.close()
        self.executor = self.harness.executor = executor
        if worker:
            await executor.start_worker()

    async def start_services(
        self, services: Iterable[str] = LOCAL_SERVICES, *, engines: Sequence[str] | None = None
    ) -> None:
        """Serve ``services`` on the bus from this process. ``engines`` restricts the model
        services (infer, embed) to those engines (default: every engine)."""
        stores, bus = self.stores, self.bus
        factories: dict[str, Any] = {
            "infer": lambda: InferenceService(
                bus,
                self.engines,
                self.get_model,
                self._secret_or_none,
                default_model=self.settings.inference.default_model,
                concurrency=self.settings.inference.concurrency,
                served_engines=engines,
            ),
            "embed": lambda: EmbeddingService(
                bus,
                self.engines,
                self.get_model,
                self._secret_or_none,
                default_model=self.settings.embedding.default_model,
                served_engines=engines,
            ),
            "kv": lambda: KvService(bus, stores.require_kv()),
            "vec": lambda: VectorService(bus, stores.require_vectors()),
            "tool": lambda: ToolService(
                bus,
                self.agent_tools,
                daemons=self.daemons(),
                timeout_s=self.settings.tools.timeout_s,
            ),
            "agent": lambda: AgentCallService(bus, self._run_called_agent),
        }
        grants = load_verifier(self.settings.bus.grant_public_key_file)
        for name in services:
            worker: ServiceWorker = factories[name]()
            worker.grants = grants
            await worker.start()
            self.workers.append(worker)

    def daemons(self) -> Daemons | None:
        """How this process reaches users' tools daemons (``[tools] daemon``): the gateways
        over the bus, or (local mode) a tools host in this process, started on first use."""
        mode = self.settings.tools.daemon
        if mode == "auto":
            mode = "local" if self.settings.bus.backend == "memory" else "gateway"
        if mode == "off":
            return None
        if self._daemons is None:
            if mode == "local":
                paths = DaemonPaths.default()
                self._local_daemon = LocalDaemon(
                    HostConfig(policy_file=paths.policy, mcp_file=paths.mcp),
                    owners=frozenset({"", *self.settings.tools.local_owners}),
                )
                self._daemons = self._local_daemon
            else:
                self._daemons = DaemonCaller(self.bus)
        return self._daemons

    async def close(self) -> None:
        # runs first (they need the services), then the services, then what they use
        await self.executor.close()
        await self.deployer.close()
        if self.projection is not None:
            await self.projection.stop()
        for worker in reversed(self.workers):
            await worker.stop()
        self.workers.clear()
        if self._local_daemon is not None:
            await self._local_daemon.close()
        for runtime in self.runtimes.values():
            await runtime.close()
        await self.provider.stop()
        await self.engines.close()
        await self.bus.close()
        await self.stores.close()

    async def __aenter__(self) -> Platform:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- agents ------------------------------------------------------------------------

    async def deploy(
        self, path: Path | str, *, on_output: OutputCallback | None = None
    ) -> AgentRecord:
        """Validate an agent folder against this platform and deploy a copy of it (see
        :meth:`AgentDeployer.deploy`)."""
        return await self.deployer.deploy(path, on_output=on_output)

    async def deploy_bundle(
        self,
        bundle: bytes,
        *,
        source: str = "",
        on_output: OutputCallback | None = None,
        tenant: str | None = None,
    ) -> AgentRecord:
        """Deploy a packed agent folder (see :meth:`AgentDeployer.deploy_bundle`)."""
        return await self.deployer.deploy_bundle(
            bundle, source=source, on_output=on_output, tenant=tenant or tenants.DEFAULT_TENANT
        )

    async def get_agent(self, name: str, version: int = 0) -> AgentRecord:
        """The deployed agent ``name``: its latest version, or ``version`` (kept in memory:
        a version is never redeployed with other files, so its record never changes)."""
        if version:
            cached = self._agent_cache.get((name, version))
            if cached is not None:
                return cached
        record = await self.deployer.materialize(await self._record(name, version))
        self._agent_cache.put((record.name, record.version), record)
        return record

    async def _record(self, name: str, version: int = 0) -> AgentRecord:
        """The registry's record of ``name`` (``version``; 0: the latest), not materialized."""
        record = await self.stores.registry.get_agent(name, version or None)
        if record is None:
            if version:
                raise NotFoundError(f"agent {name!r} has no deployed version {version}")
            names = ", ".join(a.name for a in await self.stores.registry.list_agents()) or "none"
            raise NotFoundError(f"agent {name!r} is not deployed (deployed: {names})")
        return record

    async def list_agents(self) -> list[AgentRecord]:
        return await self.stores.registry.list_agents()

    async def delete_agent(self, name: str) -> None:
        await self._record(name)  # deleting needs no files here (nor their environments)
        await self.stores.registry.delete_agent(name)

    async def agent_tools(self, agent: str, version: int = 0) -> dict[str, DeclaredTool]:
        """The tools ``agent`` (deployed ``version``; 0: the latest) declares, by the name a
        model is offered, with the implementations of those that run in the worker (from
        built-ins and its deployed folder). A version's tools never change: they are cached."""
        cached = self._tool_cache.get((agent, version)) if version else None
        if cached is not None:
            return cached
        record = await self.get_agent(agent, version)
        cached = self._tool_cache.get((record.name, record.version))
        if cached is not None:
            return cached
        manifest = parse_manifest(record.manifest, f"{record.path}/agent.toml")
        builtins = builtin_tools()
        tools: dict[str, DeclaredTool] = {}
        for decl in manifest.tools:
            server: Tool | None = None
            if decl.entry:
                fn = load_entry(record.path, decl.entry, key=f"{record.name}_v{record.version}")
                server = tool_from_function(fn, name=decl.name, description=decl.description)
            elif decl.name in builtins:
                server = builtins[decl.name]
            elif decl.runs_on != "daemon":
                raise NotFoundError(
                    f"agent {agent!r} declares tool {decl.name!r}, which is no built-in "
                    f"({', '.join(sorted(builtins))}) and has no 'entry'"
                    + (
                        '; a tool of the user\'s tools daemon needs runs_on = "daemon"'
                        if decl.runs_on == "server"
                        else ""
                    )
                )
            tool = DeclaredTool(decl.name, decl.runs_on, decl.description, server)
            tools[tool.offered_name] = tool
        self._tool_cache[(record.name, record.version)] = tools
        return tools

    # --- runs --------------------------------------------------------------------------

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
        """Run a deployed agent (see :meth:`roost.runtime.Harness.run`)."""
        version = await self._runnable(agent, session, branch)
        return await self.harness.run(
            agent,
            input,
            session=session,
            branch=branch,
            timeout_s=timeout_s,
            on_event=on_event,
            run_id=run_id,
            agent_version=version,
            owner=owner,
        )

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
        """Start a run of a deployed agent and return at once (see
        :meth:`roost.runtime.Harness.start`)."""
        version = await self._runnable(agent, session, branch)
        sess, invocation = await self.harness.start(
            agent,
            input,
            session=session,
            branch=branch,
            timeout_s=timeout_s,
            run_id=run_id,
            agent_version=version,
            owner=owner,
        )
        return RunStarted(session=sess, branch=invocation.branch, run_id=invocation.id)

    async def _runnable(self, agent: str, session: str | None, branch: str | None) -> int:
        """The version of ``agent`` a run starts on, once the request is checked."""
        record = await self.get_agent(agent)
        if branch is not None and session is None:
            raise InvalidRequestError(
                f"branch {branch!r} without a session: a branch belongs to a session; give "
                "the session too"
            )
        return record.version

    async def _run_called_agent(self, call: AgentCall, request: RequestMessage) -> CompleteMessage:
        result = await self.harness.run(
            call.agent,
            call.input,
            timeout_s=call.timeout_s,
            metadata={
                "depth": call.depth,
                "caller": request.agent,
                "caller_session": request.session,
            },
            trace=request.trace,
            # one call, one run: a retried call (durable runs) finds the run it started
            # in the caller's tenant, as the called agent is (roost.services.agents)
            run_id=tenants.qualify(tenants.tenant_of(request.agent), f"{request.id}.call"),
            owner=request.owner,  # the called agent's daemon tools reach the same user
        )
        return result.complete

    # --- sessions ----------------------------------------------------------------------

    async def list_sessions(self, agent: str | None = None, limit: int = 50) -> list[Session]:
        return await self.stores.state.list_sessions(agent=agent, limit=limit)

    async def get_session(self, ref: str) -> Session:
        return await self.stores.state.get_session(ref)

    async def list_branches(self, session: str) -> list[Branch]:
        return await self.stores.state.list_branches(session)

    async def session_nodes(self, session: str, branch: str | None = None) -> list[Node]:
        sess = await self.get_session(session)
        return await self.stores.state.list_nodes(sess.id, branch or sess.main_branch)

    async def fork(self, session: str, from_node: str, branch: str | None = None) -> Branch:
        """Branch ``session`` at ``from_node`` (id or unique prefix); the new branch's KV
        (session scope) is what each agent's KV was at that node."""
        return await fork_session(self.stores, await self.get_session(session), from_node, branch)

    async def promote(self, session: str, branch: str) -> None:
        sess = await self.get_session(session)
        await self.stores.state.promote(sess.id, branch)

    # --- models and secrets ------------------------------------------------------------

    async def get_model(self, name: str) -> ModelRecord:
        """The registered model ``name`` (cached: see :class:`ModelCatalog`)."""
        return await self.models.get(name)

    async def list_models(self) -> list[ModelRecord]:
        return await self.models.registered()

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
        record = model_record(
            name=name,
            engine=engine,
            target=target,
            kind=kind,
            base_url=base_url,
            api_key_secret=api_key_secret,
            dimension=dimension,
        )
        return await self.models.add(record, replace=replace)

    async def remove_model(self, name: str) -> None:
        await self.models.remove(name)

    async def available_models(
        self, engine: str | None = None, base_url: str = ""
    ) -> list[AvailableModel]:
        """Models each engine can serve (see :meth:`ModelCatalog.available`)."""
        return await self.models.available(engine, base_url)

    @property
    def secrets(self) -> SecretStore:
        return self.stores.secrets

    async def _secret_or_none(self, name: str) -> str | None:
        if not name or not await self.stores.secrets.exists(name):
            return None
        value: str = await self.stores.secrets.get(name)
        return value
