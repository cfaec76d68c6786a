"""The registry on SQL: deployed agents (versioned) and their files, models, capabilities,
and the workers of a deployment with their heartbeats."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, select
from sqlalchemy.orm import Session as DbSession

from roost.protocol import InvalidRequestError, NotFoundError
from roost.stores._db import Database, sha256_hex
from roost.stores._records import AgentRecord, Capability, ModelRecord, WorkerRecord
from roost.stores._schema import AgentBundleRow, AgentRow, CapabilityRow, ModelRow, WorkerRow

_AGENTS: Table = AgentRow.__table__  # type: ignore[assignment]
_AGENT_COLUMNS = [
    _AGENTS.c[name] for name in ("name", "version", "manifest", "path", "deployed_at")
]
_AGENT_VERSION = select(*_AGENT_COLUMNS).where(
    _AGENTS.c.name == bindparam("name"), _AGENTS.c.version == bindparam("version")
)
_LATEST_AGENT = (
    select(*_AGENT_COLUMNS)
    .where(_AGENTS.c.name == bindparam("name"))
    .order_by(_AGENTS.c.version.desc())
    .limit(1)
)


def _agent(row: AgentRow) -> AgentRecord:
    return AgentRecord(
        name=row.name,
        version=row.version,
        manifest=row.manifest,
        path=row.path,
        deployed_at=row.deployed_at,
    )


def _model(row: ModelRow) -> ModelRecord:
    return ModelRecord(
        name=row.name,
        kind=row.kind,  # type: ignore[arg-type]  # validated on the way in
        engine=row.engine,  # type: ignore[arg-type]
        target=row.target,
        base_url=row.base_url,
        api_key_secret=row.api_key_secret,
        dimension=row.dimension,
        options=row.options,
    )


def _capability(row: CapabilityRow) -> Capability:
    return Capability(service=row.service, details=row.details, updated_at=row.updated_at)


def _worker(row: WorkerRow) -> WorkerRecord:
    return WorkerRecord(
        id=row.id,
        node=row.node,
        role=row.role,
        pid=row.pid,
        address=row.address,
        capabilities=row.capabilities,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
    )


def _require_name(what: str, name: str) -> None:
    if not name or not name.strip():
        raise InvalidRequestError(f"{what} name must not be empty")
    if len(name) > 200:
        raise InvalidRequestError(f"{what} name is longer than 200 characters: {name[:40]!r}...")


class SqlRegistryStore:
    """:class:`~roost.stores.RegistryStore` on the shared SQL database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- agents ------------------------------------------------------------------------

    async def next_agent_version(self, name: str) -> int:
        return await self._db.run(self._next_version, name)

    def _next_version(self, name: str) -> int:
        with self._db.read() as s:
            return _next_version_in(s, name)

    async def put_agent(
        self, name: str, version: int, manifest: dict[str, Any], path: str
    ) -> AgentRecord:
        _require_name("agent", name)
        if version < 1:
            raise InvalidRequestError(f"agent versions start at 1, not {version}")

        def work(s: DbSession) -> AgentRecord:
            if s.get(AgentRow, (name, version)) is not None:
                raise InvalidRequestError(f"agent {name!r} version {version} is already deployed")
            row = AgentRow(
                name=name, version=version, manifest=manifest, path=path, deployed_at=time.time()
            )
            s.add(row)
            return _agent(row)

        return await self._db.writing(work, what=f"deploy agent {name!r}")

    async def deploy_agent(self, name: str, manifest: dict[str, Any], path: str) -> AgentRecord:
        _require_name("agent", name)

        def work(s: DbSession) -> AgentRecord:
            row = AgentRow(
                name=name,
                version=_next_version_in(s, name),
                manifest=manifest,
                path=path,
                deployed_at=time.time(),
            )
            s.add(row)
            return _agent(row)

        return await self._db.writing(work, what=f"deploy agent {name!r}")

    async def get_agent(self, name: str, version: int | None = None) -> AgentRecord | None:
        return await self._db.run(self._get_agent, name, version)

    def _get_agent(self, name: str, version: int | None) -> AgentRecord | None:
        # Core statements: every run looks its agent up
        query = _LATEST_AGENT if version is None else _AGENT_VERSION
        with self._db.read_connection() as c:
            row = c.execute(query, {"name": name, "version": version}).first()
        return AgentRecord(**row._mapping) if row is not None else None

    async def list_agents(self) -> list[AgentRecord]:
        return await self._db.run(self._list_agents)

    def _list_agents(self) -> list[AgentRecord]:
        latest = (
            select(AgentRow.name, func.max(AgentRow.version).label("version"))
            .group_by(AgentRow.name)
            .subquery()
        )
        query = (
            select(AgentRow)
            .join(latest, (AgentRow.name == latest.c.name) & (AgentRow.version == latest.c.version))
            .order_by(AgentRow.name)
        )
        with self._db.read() as s:
            return [_agent(row) for row in s.scalars(query)]

    async def agent_versions(self, name: str) -> list[AgentRecord]:
        return await self._db.run(self._agent_versions, name)

    def _agent_versions(self, name: str) -> list[AgentRecord]:
        query = select(AgentRow).where(AgentRow.name == name).order_by(AgentRow.version)
        with self._db.read() as s:
            return [_agent(row) for row in s.scalars(query)]

    async def delete_agent(self, name: str) -> int:
        def work(s: DbSession) -> int:
            count = (
                s.scalar(select(func.count()).select_from(AgentRow).where(AgentRow.name == name))
                or 0
            )
            if not count:
                raise NotFoundError(f"agent {name!r} is not deployed")
            s.execute(delete(AgentRow).where(AgentRow.name == name))
            return count

        return await self._db.writing(work, what=f"delete agent {name!r}")

    # --- models ------------------------------------------------------------------------

    async def add_model(self, record: ModelRecord, *, replace: bool = False) -> None:
        _require_name("model", record.name)

        def work(s: DbSession) -> None:
            row = s.get(ModelRow, record.name)
            if row is not None and not replace:
                raise InvalidRequestError(
                    f"model {record.name!r} already exists ({row.engine} {row.target}); "
                    "remove it first or replace it"
                )
            if row is None:
                row = ModelRow(name=record.name)
                s.add(row)
            row.kind = record.kind
            row.engine = record.engine
            row.target = record.target
            row.base_url = record.base_url
            row.api_key_secret = record.api_key_secret
            row.dimension = record.dimension
            row.options = dict(record.options)
            row.updated_at = time.time()

        await self._db.writing(work, what=f"add model {record.name!r}")

    async def get_model(self, name: str) -> ModelRecord | None:
        return await self._db.run(self._get_model, name)

    def _get_model(self, name: str) -> ModelRecord | None:
        with self._db.read() as s:
            row = s.get(ModelRow, name)
            return _model(row) if row is not None else None

    async def list_models(self) -> list[ModelRecord]:
        return await self._db.run(self._list_models)

    def _list_models(self) -> list[ModelRecord]:
        with self._db.read() as s:
            return [_model(row) for row in s.scalars(select(ModelRow).order_by(ModelRow.name))]

    async def remove_model(self, name: str) -> None:
        def work(s: DbSession) -> None:
            row = s.get(ModelRow, name)
            if row is None:
                raise NotFoundError(f"unknown model {name!r}")
            s.delete(row)

        await self._db.writing(work, what=f"remove model {name!r}")

    # --- capabilities ------------------------------------------------------------------

    async def set_capability(self, service: str, details: dict[str, Any]) -> Capability:
        _require_name("service", service)

        def work(s: DbSession) -> Capability:
            row = s.get(CapabilityRow, service)
            if row is None:
                row = CapabilityRow(service=service)
                s.add(row)
            row.details = dict(details)
            row.updated_at = time.time()
            return _capability(row)

        return await self._db.writing(work, what=f"set capability {service!r}")

    async def get_capability(self, service: str) -> Capability | None:
        return await self._db.run(self._get_capability, service)

    def _get_capability(self, service: str) -> Capability | None:
        with self._db.read() as s:
            row = s.get(CapabilityRow, service)
            return _capability(row) if row is not None else None

    async def list_capabilities(self) -> list[Capability]:
        return await self._db.run(self._list_capabilities)

    def _list_capabilities(self) -> list[Capability]:
        query = select(CapabilityRow).order_by(CapabilityRow.service)
        with self._db.read() as s:
            return [_capability(row) for row in s.scalars(query)]

    async def remove_capability(self, service: str) -> None:
        def work(s: DbSession) -> None:
            s.execute(delete(CapabilityRow).where(CapabilityRow.service == service))

        await self._db.writing(work, what=f"remove capability {service!r}")

    # --- agent bundles -----------------------------------------------------------------

    async def put_agent_bundle(self, name: str, version: int, bundle: bytes) -> str:
        digest = sha256_hex(bundle)

        _require_name("agent", name)

        def work(s: DbSession) -> str:
            row = s.get(AgentBundleRow, (name, version))
            if row is None:
                row = AgentBundleRow(name=name, version=version)
                s.add(row)
            row.digest, row.data, row.size = digest, bundle, len(bundle)
            return digest

        return await self._db.writing(work, what=f"store the files of {name} v{version}")

    async def get_agent_bundle(self, name: str, version: int) -> bytes | None:
        return await self._db.run(self._get_bundle, name, version)

    def _get_bundle(self, name: str, version: int) -> bytes | None:
        with self._db.read() as s:
            row = s.get(AgentBundleRow, (name, version))
            return bytes(row.data) if row is not None else None

    # --- workers -----------------------------------------------------------------------

    async def register_worker(
        self,
        worker_id: str,
        *,
        node: str,
        role: str,
        pid: int,
        address: str = "",
        capabilities: dict[str, Any] | None = None,
    ) -> WorkerRecord:
        _require_name("worker", worker_id)

        def work(s: DbSession) -> WorkerRecord:
            now = time.time()
            row = s.get(WorkerRow, worker_id)
            if row is None:
                row = WorkerRow(id=worker_id, started_at=now)
                s.add(row)
            row.node, row.role, row.pid, row.address = node, role, pid, address
            row.capabilities = dict(capabilities or {})
            row.heartbeat_at = now
            return _worker(row)

        return await self._db.writing(work, what=f"register worker {worker_id!r}")

    async def heartbeat_worker(
        self, worker_id: str, capabilities: dict[str, Any] | None = None
    ) -> bool:
        def work(s: DbSession) -> bool:
            row = s.get(WorkerRow, worker_id)
            if row is None:
                return False
            row.heartbeat_at = time.time()
            if capabilities is not None:
                row.capabilities = dict(capabilities)
            return True

        return await self._db.writing(work, what=f"heartbeat of worker {worker_id!r}")

    async def list_workers(self, *, live_within_s: float | None = None) -> list[WorkerRecord]:
        return await self._db.run(self._list_workers, live_within_s)

    def _list_workers(self, live_within_s: float | None) -> list[WorkerRecord]:
        query = select(WorkerRow).order_by(WorkerRow.node, WorkerRow.role, WorkerRow.id)
        if live_within_s is not None:
            query = query.where(WorkerRow.heartbeat_at >= time.time() - live_within_s)
        with self._db.read() as s:
            return [_worker(row) for row in s.scalars(query)]

    async def remove_worker(self, worker_id: str) -> None:
        def work(s: DbSession) -> None:
            s.execute(delete(WorkerRow).where(WorkerRow.id == worker_id))

        await self._db.writing(work, what=f"remove worker {worker_id!r}")

    async def expire_workers(self, older_than_s: float) -> int:
        def work(s: DbSession) -> int:
            cutoff = time.time() - older_than_s
            result = s.execute(delete(WorkerRow).where(WorkerRow.heartbeat_at < cutoff))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

        return await self._db.writing(work, what="expire workers")


def _next_version_in(s: DbSession, name: str) -> int:
    """One past every version ever deployed, deleted ones included (their bundles stay):
    a version number always means the same files, so processes may cache it."""
    deployed = s.scalar(select(func.max(AgentRow.version)).where(AgentRow.name == name))
    bundled = s.scalar(select(func.max(AgentBundleRow.version)).where(AgentBundleRow.name == name))
    return max(deployed or 0, bundled or 0) + 1
