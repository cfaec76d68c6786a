"""Deploying agents: a folder checked against the platform, bundled into the registry, and
each version's files and dependency environments made ready on the node that runs it."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from pathlib import Path

from roost.agents import (
    AgentManifest,
    BundleError,
    DependencyError,
    EntryPointError,
    InstallOptions,
    ManifestError,
    OutputCallback,
    PreparedEnv,
    agent_path,
    environments_linked,
    find_dependencies,
    load_entry,
    load_manifest,
    pack_folder,
    prepare_environment,
    unpack_bundle,
)
from roost.bus import Bus
from roost.config import Settings
from roost.platform._presence import engines_served, serving
from roost.protocol import (
    AgentError,
    InvalidRequestError,
    NoRespondersError,
    NotFoundError,
    RequestMessage,
    ServiceTimeoutError,
    subjects,
    tenants,
)
from roost.services import call_service
from roost.services.inference import resolve, visible_models
from roost.stores import (
    AgentRecord,
    ModelKind,
    ModelRecord,
    RegistryStore,
    WorkerRecord,
    sha256_hex,
)
from roost.tools import builtin_tools


async def missing_services(bus: Bus, names: Iterable[str]) -> set[str]:
    """Services among ``names`` that nothing serves right now (pinged over ``bus``)."""
    missing: set[str] = set()
    for name in names:
        try:
            await call_service(bus, RequestMessage(service=name, op="ping", timeout_s=2.0))  # type: ignore[arg-type]
        except (NoRespondersError, ServiceTimeoutError):
            missing.add(name)
    return missing


class AgentDeployer:
    """Deploys agent folders into the registry and materializes deployed versions here.

    ``get_model`` and ``list_models`` are the platform's (cached) model lookups, which the
    manifest's model needs are checked against.
    """

    def __init__(
        self,
        settings: Settings,
        registry: RegistryStore,
        bus: Bus,
        *,
        get_model: Callable[[str], Awaitable[ModelRecord]],
        list_models: Callable[[], Awaitable[list[ModelRecord]]],
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.bus = bus
        self.get_model = get_model
        self.list_models = list_models
        self._materialized: set[str] = set()
        self._installs: dict[str, asyncio.Future[list[PreparedEnv]]] = {}

    async def close(self) -> None:
        """Cancel the installs under way (an install cancelled midway removes what it made)."""
        for install in list(self._installs.values()):
            install.cancel()
        await asyncio.gather(*self._installs.values(), return_exceptions=True)

    async def deploy(
        self,
        path: Path | str,
        *,
        on_output: OutputCallback | None = None,
        tenant: str = tenants.DEFAULT_TENANT,
    ) -> AgentRecord:
        """Validate an agent folder against this platform and deploy a copy of it.

        The copy is a bundle stored in the registry (so workers on other nodes can run the
        agent) and unpacked under ``$ROOST_HOME/agents/NAME/vN`` here. Dependencies the
        folder declares (``requirements.txt``, ``pyproject.toml``, ``package.json`` + lock
        file) are installed into an environment of this version first, cached by the bundle's
        digest; ``on_output`` receives the install's output as it happens. A failed install
        (a :class:`~roost.agents.DependencyError`) leaves no trace: the version never becomes
        current, the previous one keeps serving.

        The agent goes into ``tenant``'s namespace (``acme+NAME`` in the registry), and the
        models it names are looked up as that tenant's runs will look them up."""
        path = Path(path).resolve()
        folder = path.parent if path.is_file() else path
        manifest = load_manifest(path)
        manifest_file = folder / "agent.toml"
        find_dependencies(folder)  # a wrong declaration is reported before any work
        await self._validate(manifest, folder, manifest_file, tenant)
        try:
            bundle = pack_folder(folder)
        except BundleError as exc:
            raise ManifestError(manifest_file, "", str(exc)) from None
        name = tenants.qualify(tenant, manifest.name)
        version = await self.registry.next_agent_version(name)
        target = self._agent_dir(name, version)
        if target.exists():
            shutil.rmtree(target)
        await asyncio.to_thread(unpack_bundle, bundle, target)
        try:
            await self._prepare_env(target, bundle, on_output=on_output, named_as=folder)
            self._check_code(manifest, target, manifest_file, shown=folder)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        await self.registry.put_agent_bundle(name, version, bundle)
        record = await self.registry.put_agent(
            name, version, manifest.model_dump(mode="json"), str(target)
        )
        self._materialized.add(str(target))
        return record

    async def deploy_bundle(
        self,
        bundle: bytes,
        *,
        source: str = "",
        on_output: OutputCallback | None = None,
        tenant: str = tenants.DEFAULT_TENANT,
    ) -> AgentRecord:
        """Deploy an agent folder that arrives packed (:func:`~roost.agents.pack_folder`),
        from a client of the harness or the API. Errors name ``source`` (the client's
        folder), never this node's scratch copy."""
        scratch = self.settings.home / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="deploy-", dir=scratch))
        shown = source or "agent"
        try:
            try:
                await asyncio.to_thread(unpack_bundle, bundle, folder / "agent")
            except BundleError as exc:
                raise InvalidRequestError(f"{source or 'agent bundle'}: {exc}") from None
            try:
                return await self.deploy(folder / "agent", on_output=on_output, tenant=tenant)
            except ManifestError as exc:
                raise InvalidRequestError(str(exc).replace(str(folder / "agent"), shown)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _agent_dir(self, name: str, version: int) -> Path:
        return self.settings.home / "agents" / name / f"v{version}"

    async def materialize(self, record: AgentRecord) -> AgentRecord:
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
        bundle = await self.registry.get_agent_bundle(record.name, record.version)
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
            elif decl.name not in builtins and decl.runs_on != "daemon":
                raise ManifestError(
                    file,
                    f"tools.{i}.name",
                    f"no built-in tool {decl.name!r} (built-ins: {', '.join(sorted(builtins))}); "
                    "give 'entry' for a tool of your own, or runs_on = \"daemon\" for one of "
                    "the user's tools daemon",
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

    async def _validate(
        self, manifest: AgentManifest, folder: Path, file: Path, tenant: str
    ) -> None:
        """Check the manifest against this platform: models, engines, services. (Its code
        is checked once its environments exist: :meth:`_check_code`.)"""
        used = manifest.services_used
        # a deployment of roostd workers says what it serves; trust only live workers
        workers = await self.registry.list_workers(
            live_within_s=self.settings.distributed.worker_ttl_s
        )
        if "infer" in used:
            model = await self._require_model(
                file, "models.chat", manifest.models.chat, "chat", tenant
            )
            self._require_engine(file, "models.chat", model, "infer", workers)
        if "embed" in used:
            model = await self._require_model(
                file, "models.embedding", manifest.models.embedding, "embedding", tenant
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
        missing = await missing_services(self.bus, used)
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

    async def _require_model(
        self, file: Path, field: str, name: str, kind: ModelKind, tenant: str
    ) -> ModelRecord:
        wanted = name or (
            self.settings.inference.default_model
            if kind == "chat"
            else self.settings.embedding.default_model
        )
        try:
            model = await resolve(wanted, kind, self.get_model, None, tenant=tenant)
        except NotFoundError:
            visible = await visible_models(self.list_models, tenant, kind)
            known = ", ".join(tenants.local_name(tenant, m.name) or m.name for m in visible)
            known = known or "none"
            hint = "" if name else " (the platform default)"
            raise ManifestError(
                file,
                field,
                f"unknown {kind} model {wanted!r}{hint}; registered {kind} models: {known}",
            ) from None
        except InvalidRequestError:
            other = "embedding" if kind == "chat" else "chat"
            raise ManifestError(
                file, field, f"model {wanted!r} is a {other} model, not {kind}"
            ) from None
        return model


__all__ = ["AgentDeployer", "missing_services"]
