"""The platform assembled in one process: stores, bus, services, runtimes, harness.

This is what ``roost`` uses in local mode (memory bus, SQLite, embedded engines), and what
``roostd`` runs to serve the platform services on NATS. The CLI only talks to this facade.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from roost.agents import (
    AgentManifest,
    BundleError,
    DependencyError,
    InstallOptions,
    ManifestError,
    PreparedEnv,
    find_dependencies,
    load_manifest,
    pack_folder,
    parse_manifest,
    prepare_environment,
    unpack_bundle,
)
from roost.agents._deps import OutputCallback, agent_path, environments_linked
from roost.agents._loader import EntryPointError, load_entry
from roost.bus import Bus, create_bus
from roost.config import Settings
from roost.engines import ENGINE_NAMES, EngineSet, default_models
from roost.platform._presence import engines_served, serving
from roost.protocol import (
    AgentCall,
    AgentError,
    CompleteMessage,
    InvalidRequestError,
    NoRespondersError,
    NotFoundError,
    RequestMessage,
    RoostError,
    ServiceTimeoutError,
    subjects,
)
from roost.runtime import (
    EVENTS_STREAM,
    AgentRuntime,
    ChatRuntime,
    EngineRouter,
    EventLog,
    EventProjection,
    Executor,
    Harness,
    InProcessExecutor,
    ProcessRuntime,
    ProviderEndpoint,
    PythonRuntime,
    RunResult,
    StateRecorder,
)
from roost.runtime._harness import EventCallback, branch_history
from roost.services import ServiceWorker, call_service
from roost.services.agents import AgentCallService
from roost.services.embedding import EmbeddingService
from roost.services.inference import InferenceService
from roost.services.kv import KvService
from roost.services.tools import ToolService
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
    WorkerRecord,
    open_stores,
    sha256_hex,
)
from roost.tools import Tool, builtin_tools, tool_from_function

log = logging.getLogger("roost.platform")

LOCAL_SERVICES = ("infer", "embed", "kv", "vec", "tool", "agent")
MODEL_CACHE_S = 5.0
"""How long a process trusts a model record it fetched from the registry."""


class Platform:
    """One process's view of roost. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, settings: Settings, stores: Stores, bus: Bus, engines: EngineSet) -> None:
        self.settings = settings
        self.stores = stores
        self.bus = bus
        self.engines = engines
        self.workers: list[ServiceWorker] = []
        self.provider = ProviderEndpoint()
        self.runtimes: dict[str, AgentRuntime] = {
            "python": PythonRuntime(),
            "chat": ChatRuntime(max_turns=settings.runtime.max_turns),
            "process": ProcessRuntime(
                self.provider,
                start_timeout_s=settings.runtime.process_start_timeout_s,
                prepare=self._materialize,  # the node running a process has its files
            ),
        }
        # one recorder of this process's protocol messages into the session DAG
        self.recorder = StateRecorder(stores.state)
        self.router = EngineRouter(self.get_model)
        self.events = EventLog(
            bus, self.recorder, via_stream=settings.runtime.record_events == "projection"
        )
        self.executor: Executor = InProcessExecutor(
            bus,
            self.recorder,
            self.get_agent,
            self.runtimes,
            load_history=functools.partial(branch_history, stores.state),
            default_chat_model=settings.inference.default_model,
            default_embedding_model=settings.embedding.default_model,
            request_timeout_s=settings.runtime.request_timeout_s,
            infer_timeout_s=settings.inference.timeout_s,
            events=self.events,
            router=self.router,
        )
        self.harness = Harness(
            bus, stores.state, self.executor, run_timeout_s=settings.runtime.run_timeout_s
        )
        self._tool_cache: dict[tuple[str, int], dict[str, Tool]] = {}
        self._agent_cache: LruCache[tuple[str, int], AgentRecord] = LruCache(256)
        self._materialized: set[str] = set()
        self._installs: dict[str, asyncio.Future[list[PreparedEnv]]] = {}
        self.projection: EventProjection | None = None
        self._model_cache: dict[str, tuple[ModelRecord, float]] = {}

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
            await _register_defaults(stores, default_models())
            bus = create_bus(settings.bus.backend, settings.bus.url)
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
        from roost.workflows import RunActivities, RunOptions, TemporalExecutor, connect_temporal

        config = self.settings.workflows
        address = config.temporal_address
        if not address:
            from roost.devservers.temporal import ensure_embedded_temporal

            address = await asyncio.to_thread(
                ensure_embedded_temporal, self.settings.home, namespace=config.namespace
            )
        client = await connect_temporal(address, config.namespace, timeout=config.connect_timeout_s)
        activities = RunActivities(
            self.bus,
            self.recorder,
            self.get_agent,
            functools.partial(branch_history, self.stores.state),
            self.runtimes["process"],
            heartbeat_every_s=min(2.0, config.heartbeat_timeout_s / 3),
            events=self.events,
            router=self.router,
        )
        options = RunOptions(
            request_timeout_s=self.settings.runtime.request_timeout_s,
            infer_timeout_s=self.settings.inference.timeout_s,
            chat_model=self.settings.inference.default_model,
            embedding_model=self.settings.embedding.default_model,
            max_turns=self.settings.runtime.max_turns,
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
            "tool": lambda: ToolService(bus, self.agent_tools),
            "agent": lambda: AgentCallService(bus, self._run_called_agent),
        }
        for name in services:
            worker: ServiceWorker = factories[name]()
            await worker.start()
            self.workers.append(worker)

    async def close(self) -> None:
        # runs first (they need the services), then the services, then what they use
        await self.executor.close()
        for install in list(self._installs.values()):
            install.cancel()  # an install cancelled midway removes what it made
        await asyncio.gather(*self._installs.values(), return_exceptions=True)
        if self.projection is not None:
            await self.projection.stop()
        for worker in reversed(self.workers):
            await worker.stop()
        self.workers.clear()
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
        """Validate an agent folder against this platform and deploy a copy of it.

        The copy is a bundle stored in the registry (so workers on other nodes can run the
        agent) and unpacked under ``$ROOST_HOME/agents/NAME/vN`` here. Dependencies the
        folder declares (``requirements.txt``, ``pyproject.toml``, ``package.json`` + lock
        file) are installed into an environment of this version first, cached by the bundle's
        digest; ``on_output`` receives the install's output as it happens. A failed install
        (a :class:`~roost.agents.DependencyError`) leaves no trace: the version never becomes
        current, the previous one keeps serving."""
        path = Path(path).resolve()
        folder = path.parent if path.is_file() else path
        manifest = load_manifest(path)
        manifest_file = folder / "agent.toml"
        find_dependencies(folder)  # a wrong declaration is reported before any work
        await self._validate(manifest, folder, manifest_file)
        try:
            bundle = pack_folder(folder)
        except BundleError as exc:
            raise ManifestError(manifest_file, "", str(exc)) from None
        version = await self.stores.registry.next_agent_version(manifest.name)
        target = self._agent_dir(manifest.name, version)
        if target.exists():
            shutil.rmtree(target)
        await asyncio.to_thread(unpack_bundle, bundle, target)
        try:
            await self._prepare_env(target, bundle, on_output=on_output, named_as=folder)
            self._check_code(manifest, target, manifest_file, shown=folder)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        await self.stores.registry.put_agent_bundle(manifest.name, version, bundle)
        record = await self.stores.registry.put_agent(
            manifest.name, version, manifest.model_dump(mode="json"), str(target)
        )
        self._materialized.add(str(target))
        return record

    def _agent_dir(self, name: str, version: int) -> Path:
        return self.settings.home / "agents" / name / f"v{version}"

    async def _materialize(self, record: AgentRecord) -> AgentRecord:
        """The record with ``path`` pointing at this machine's copy of the version's files,
        unpacked from the registry's bundle the first time this home needs it, with the
        environments of its dependencies installed (or found in the cache) and linked."""
        target = self._agent_dir(record.name, record.version)
        local = record if record.path == str(target) else replace(record, path=str(target))
        if str(target) in self._materialized:
            return local
        bundle: bytes | None = None
        if not target.is_dir():
            bundle = await self._bundle_of(record)
            await asyncio.to_thread(unpack_bundle, bundle, target)
        label = f"agent {record.name!r} v{record.version}"
        try:
            if not environments_linked(target):
                if bundle is None:
                    bundle = await self._bundle_of(record)
                await self._prepare_env(target, bundle)
        except DependencyError as exc:
            raise AgentError(f"{label} cannot run on this node: {exc}") from None
        self._materialized.add(str(target))
        return local

    async def _bundle_of(self, record: AgentRecord) -> bytes:
        bundle = await self.stores.registry.get_agent_bundle(record.name, record.version)
        if bundle is None:
            raise NotFoundError(
                f"agent {record.name!r} v{record.version}: the registry holds no files for it "
                "(deployed before bundles existed?); deploy it again"
            )
        return bundle

    async def _prepare_env(
        self,
        folder: Path,
        bundle: bytes,
        *,
        on_output: OutputCallback | None = None,
        named_as: Path | None = None,
    ) -> list[PreparedEnv]:
        """Install (or find cached) the environments of the version in ``folder``, whose
        files are ``bundle`` (environments are cached by its digest). One
        install per version folder at a time in this process, and it runs on even when
        the caller is cancelled (a Temporal activity that timed out, a client that gave
        up): the next caller finds it finished or joins it."""
        key = str(folder)
        task = self._installs.get(key)
        if task is None:
            config = self.settings.agents
            options = InstallOptions(
                root=self.settings.envs_dir,
                timeout_s=config.install_timeout_s,
                pip_args=tuple(config.pip_args),
                npm_args=tuple(config.npm_args),
            )
            digest = sha256_hex(bundle)  # the registry's digest of the same bundle
            task = asyncio.ensure_future(
                prepare_environment(folder, digest, options, on_output=on_output, named_as=named_as)
            )
            self._installs[key] = task
            task.add_done_callback(functools.partial(self._install_done, key))
        return await asyncio.shield(task)

    def _install_done(self, key: str, task: asyncio.Future[list[PreparedEnv]]) -> None:
        if self._installs.get(key) is task:
            del self._installs[key]
        if not task.cancelled():
            task.exception()  # retrieved: whoever awaited it reported it

    def _check_code(self, manifest: AgentManifest, folder: Path, file: Path, shown: Path) -> None:
        """Load the version's Python entry points and find its program, as they will run:
        from its folder, with its environments. Errors name ``shown`` (the user's folder)."""

        def problem(exc: Exception) -> str:
            return (
                str(exc).replace(str(folder.resolve()), str(shown)).replace(str(folder), str(shown))
            )

        key = f"deploycheck_{manifest.name}"
        builtins = builtin_tools()
        for i, decl in enumerate(manifest.tools):
            if decl.entry:
                try:
                    load_entry(folder, decl.entry, key=key)
                except EntryPointError as exc:
                    raise ManifestError(file, f"tools.{i}.entry", problem(exc)) from None
            elif decl.name not in builtins:
                raise ManifestError(
                    file,
                    f"tools.{i}.name",
                    f"no built-in tool {decl.name!r} (built-ins: {', '.join(sorted(builtins))}); "
                    "give 'entry' for a tool of your own",
                )
        if manifest.runtime == "python":
            assert isinstance(manifest.entry, str)
            try:
                load_entry(folder, manifest.entry, key=key)
            except EntryPointError as exc:
                raise ManifestError(file, "entry", problem(exc)) from None
        elif manifest.runtime == "process":
            program = manifest.command[0]
            search = agent_path(folder, os.environ.get("PATH"))
            if program not in ("python", "python3") and not (
                (folder / program).is_file() or shutil.which(program, path=search)
            ):
                raise ManifestError(
                    file, "entry", f"program {program!r} not found in {shown} or PATH"
                )

    async def _validate(self, manifest: AgentManifest, folder: Path, file: Path) -> None:
        """Check the manifest against this platform: models, engines, services. (Its code
        is checked once its environments exist: :meth:`_check_code`.)"""
        used = manifest.services_used
        # a deployment of roostd workers says what it serves; trust only live workers
        workers = await self.stores.registry.list_workers(
            live_within_s=self.settings.distributed.worker_ttl_s
        )
        if "infer" in used:
            model = await self._require_model(file, "models.chat", manifest.models.chat, "chat")
            self._require_engine(file, "models.chat", model, "infer", workers)
        if "embed" in used:
            model = await self._require_model(
                file, "models.embedding", manifest.models.embedding, "embedding"
            )
            self._require_engine(file, "models.embedding", model, "embed", workers)
        if workers:
            unserved = sorted(s for s in used if not serving(workers, s))
            if unserved:
                raise ManifestError(
                    file,
                    "services",
                    f"no live worker serves {', '.join(unserved)} (live roles: "
                    f"{', '.join(sorted({w.role for w in workers}))}); start workers of "
                    "that role or remove the service",
                )
        missing = await self.missing_services(used)
        if missing:
            raise ManifestError(
                file,
                "services",
                f"service(s) {', '.join(sorted(missing))} not running on this platform "
                f"(nothing answers on {', '.join(subjects.service(s) for s in sorted(missing))})",
            )

    @staticmethod
    def _require_engine(
        file: Path, field: str, model: ModelRecord, service: str, workers: list[WorkerRecord]
    ) -> None:
        if not serving(workers, service):
            return  # no registered workers (local mode), or the service check reports it
        engines = engines_served(workers, service)
        if "*" not in engines and model.engine not in engines:
            raise ManifestError(
                file,
                field,
                f"model {model.name!r} runs on engine {model.engine!r}, which no live "
                f"{service} worker serves (live engines: {', '.join(sorted(engines))})",
            )

    async def _require_model(self, file: Path, field: str, name: str, kind: str) -> ModelRecord:
        wanted = name or (
            self.settings.inference.default_model
            if kind == "chat"
            else self.settings.embedding.default_model
        )
        try:
            model = await self.get_model(wanted)
        except NotFoundError:
            known = ", ".join(m.name for m in await self.list_models() if m.kind == kind) or "none"
            hint = "" if name else " (the platform default)"
            raise ManifestError(
                file,
                field,
                f"unknown {kind} model {wanted!r}{hint}; registered {kind} models: {known}",
            ) from None
        if model.kind != kind:
            raise ManifestError(
                file, field, f"model {wanted!r} is a {model.kind} model, not {kind}"
            )
        return model

    async def missing_services(self, names: Iterable[str]) -> set[str]:
        """Services among ``names`` that nothing serves right now (pinged over the bus)."""
        missing: set[str] = set()
        for name in names:
            try:
                await call_service(self.bus, RequestMessage(service=name, op="ping", timeout_s=2.0))  # type: ignore[arg-type]
            except (NoRespondersError, ServiceTimeoutError):
                missing.add(name)
        return missing

    async def get_agent(self, name: str, version: int = 0) -> AgentRecord:
        """The deployed agent ``name``: its latest version, or ``version`` (kept in memory:
        a version is never redeployed with other files, so its record never changes)."""
        if version:
            cached = self._agent_cache.get((name, version))
            if cached is not None:
                return cached
        record = await self._materialize(await self._record(name, version))
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

    async def agent_tools(self, agent: str, version: int = 0) -> dict[str, Tool]:
        """The tools ``agent`` (deployed ``version``; 0: the latest) declares, loaded from
        built-ins and its deployed folder. A version's tools never change: they are cached."""
        cached = self._tool_cache.get((agent, version)) if version else None
        if cached is not None:
            return cached
        record = await self.get_agent(agent, version)
        cached = self._tool_cache.get((record.name, record.version))
        if cached is not None:
            return cached
        manifest = parse_manifest(record.manifest, f"{record.path}/agent.toml")
        builtins = builtin_tools()
        tools: dict[str, Tool] = {}
        for decl in manifest.tools:
            if decl.entry:
                fn = load_entry(record.path, decl.entry, key=f"{record.name}_v{record.version}")
                tools[decl.name] = tool_from_function(
                    fn, name=decl.name, description=decl.description
                )
            elif decl.name in builtins:
                tools[decl.name] = builtins[decl.name]
            else:
                raise NotFoundError(f"agent {agent!r} declares unknown tool {decl.name!r}")
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
    ) -> RunResult:
        """Run a deployed agent (see :meth:`roost.runtime.Harness.run`)."""
        record = await self.get_agent(agent)
        if branch is not None and session is None:
            raise InvalidRequestError(
                f"branch {branch!r} without a session: a branch belongs to a session; give "
                "the session too"
            )
        return await self.harness.run(
            agent,
            input,
            session=session,
            branch=branch,
            timeout_s=timeout_s,
            on_event=on_event,
            run_id=run_id,
            agent_version=record.version,
        )

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
            run_id=f"{request.id}.call",
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
        sess = await self.get_session(session)
        node = await self._resolve_node(sess, from_node)
        new_branch = await self.stores.state.fork(sess.id, node.id, branch)
        commits = kv_commits_at(await self.stores.state.ancestors(node.id))
        for agent, commit in commits.items():
            await self.stores.require_kv().set_ref(
                _session_ref(agent, sess.id, new_branch.name), commit
            )
        return new_branch

    async def _resolve_node(self, session: Session, ref: str) -> Node:
        if len(ref) >= 64:
            return await self.stores.state.get_node(ref)
        matches = [n for n in await self.stores.state.all_nodes(session.id) if n.id.startswith(ref)]
        if not matches:
            raise NotFoundError(f"no node {ref!r} in session {session.name}")
        if len(matches) > 1:
            raise InvalidRequestError(f"node prefix {ref!r} is ambiguous in session {session.name}")
        return matches[0]

    async def promote(self, session: str, branch: str) -> None:
        sess = await self.get_session(session)
        await self.stores.state.promote(sess.id, branch)

    # --- models and secrets ------------------------------------------------------------

    async def get_model(self, name: str) -> ModelRecord:
        """The registered model ``name``. Every model call looks its model up (the router
        for its engine, the service for the rest), so records are kept MODEL_CACHE_S: a
        model changed by another process reaches this one within that; a change made
        through this platform at once."""
        cached = self._model_cache.get(name)
        if cached is not None and time.monotonic() - cached[1] < MODEL_CACHE_S:
            return cached[0]
        model = await self.stores.registry.get_model(name)
        if model is None:
            raise NotFoundError(f"unknown model {name!r}; see `roost model list`")
        self._model_cache[name] = (model, time.monotonic())
        return model

    async def list_models(self) -> list[ModelRecord]:
        return await self.stores.registry.list_models()

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
        await self.stores.registry.add_model(record, replace=replace)
        self._model_cache.pop(name, None)
        return record

    async def remove_model(self, name: str) -> None:
        await self.get_model(name)
        await self.stores.registry.remove_model(name)
        self._model_cache.pop(name, None)

    async def available_models(
        self, engine: str | None = None, base_url: str = ""
    ) -> list[AvailableModel]:
        """Models each engine can serve: embedded ones installed here, and what remote
        engines (registered base URLs, or ``base_url``) list."""
        found: list[AvailableModel] = []
        for model in default_models():
            if engine in (None, model.engine):
                found.append(AvailableModel(model.engine, model.name, "embedded"))
        remotes: set[tuple[str, str, str]] = set()
        for model in await self.list_models():
            if model.engine in ("ollama", "openai") and engine in (None, model.engine):
                remotes.add((model.engine, model.base_url, model.api_key_secret))
        if base_url:
            for name in (engine,) if engine else ("ollama", "openai"):
                if name in ("ollama", "openai"):
                    remotes.add((name, base_url, ""))
        for name, url, secret in sorted(remotes):
            api_key = await self._secret_or_none(secret) if secret else None
            try:
                listed = await self.engines.list_models(name, url, api_key)
            except RoostError as exc:
                found.append(AvailableModel(name, f"(unreachable: {exc.message})", url))
                continue
            found.extend(AvailableModel(name, m, url) for m in listed)
        return found

    @property
    def secrets(self) -> SecretStore:
        return self.stores.secrets

    async def _secret_or_none(self, name: str) -> str | None:
        if not name or not await self.stores.secrets.exists(name):
            return None
        value: str = await self.stores.secrets.get(name)
        return value


def model_record(
    *,
    name: str,
    engine: str,
    target: str,
    kind: str = "chat",
    base_url: str = "",
    api_key_secret: str = "",
    dimension: int = 0,
) -> ModelRecord:
    """A model registration, checked (``roost model add``, locally or remotely)."""
    if engine not in ENGINE_NAMES:
        raise InvalidRequestError(f"unknown engine {engine!r} (one of: {', '.join(ENGINE_NAMES)})")
    if kind not in ("chat", "embedding"):
        raise InvalidRequestError(f"model kind must be 'chat' or 'embedding', not {kind!r}")
    if engine in ("ollama", "openai") and not base_url:
        raise InvalidRequestError(f"the {engine} engine needs --base-url")
    return ModelRecord(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        engine=engine,  # type: ignore[arg-type]
        target=target,
        base_url=base_url,
        api_key_secret=api_key_secret,
        dimension=dimension,
    )


def _session_ref(agent: str, session: str, branch: str) -> str:
    from roost.stores import session_ref

    return session_ref(agent, session, branch)


def kv_commits_at(path: list[Node]) -> dict[str, str]:
    """Each agent's session-scope KV commit at the end of ``path`` (oldest node first):
    the commit returned by its last successful put or delete."""
    requests: dict[str, dict[str, Any]] = {}
    commits: dict[str, str] = {}
    for node in path:
        content = node.content
        if node.kind == "request" and content.get("service") == "kv":
            requests[content.get("id", "")] = content
        elif node.kind == "response" and content.get("ok", True):
            request = requests.get(content.get("correlation_id", ""))
            if request is None or request.get("op") not in ("put", "delete"):
                continue
            if (request.get("body") or {}).get("scope", "session") != "session":
                continue
            commit = (content.get("body") or {}).get("commit")
            if commit:
                commits[request.get("agent", "")] = commit
    return commits


async def _register_defaults(stores: Stores, models: list[ModelRecord]) -> None:
    """Register the embedded default models, refreshing their paths (they move with the venv)."""
    for model in models:
        current = await stores.registry.get_model(model.name)
        if current is None or (current.engine == model.engine and current.target != model.target):
            await stores.registry.add_model(model, replace=True)
