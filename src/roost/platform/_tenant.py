"""One tenant's view of a platform: :class:`TenantPlatform`.

Tenancy is enforced here, once, for every client surface built on
:class:`~roost.platform.PlatformAPI` (the API server's REST, OpenAI and A2A routes): each
name a caller gives is qualified into its tenant's namespace on the way in
(:mod:`roost.protocol.tenants`), and each record on the way out is either the tenant's own,
shown by its local name, or absent. Another tenant's agent, session, run, model or secret
is never found: it answers exactly as a name nobody uses (404), and lists never show it.

Runs inherit their tenant from their agent (``acme+echo``), and run ids are qualified too,
so a caller cannot pick another tenant's run id to attach to. Models: a tenant uses its
own, then the deployment's shared models (the default tenant's), as its runs do.
"""

from __future__ import annotations

import builtins
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from roost.agents import OutputCallback, pack_agent
from roost.platform._api import PlatformAPI, RunControl
from roost.protocol import (
    CompleteMessage,
    EventMessage,
    InvalidRequestError,
    NotFoundError,
    new_id,
    tenants,
)
from roost.runtime import EventCallback, RunInfo, RunResult, RunStarted
from roost.services.inference import visible_models
from roost.stores import (
    AgentRecord,
    AvailableModel,
    Branch,
    ModelRecord,
    Node,
    SecretStore,
    Session,
)

T = TypeVar("T")
M = TypeVar("M", bound=msgspec.Struct)

#: The fields of a protocol message that hold a stored name: its run id (an invoke's
#: ``id``, the others' ``correlation_id``) and its agent.
_NAMED_FIELDS = ("id", "correlation_id", "agent")


def refuse_tenant(tenant: str | None) -> None:
    """What a client of a server does with a ``tenant`` it was asked to deploy into: its
    credentials decide that, so anything but the default is an error."""
    if tenant not in (None, tenants.DEFAULT_TENANT):
        raise InvalidRequestError(
            "a client deploys into the tenant of its credentials; it cannot choose one"
        )


class _Names:
    """Qualifies and unqualifies one tenant's names; ``what`` names the kind in errors."""

    def __init__(self, tenant: str) -> None:
        if not tenants.is_tenant(tenant):
            raise ValueError(f"not a tenant id: {tenant!r}")
        self.tenant = tenant

    def inward(self, name: str, what: str) -> str:
        """The stored name of the caller's ``name``; a name with a qualifier of its own
        names nothing of this tenant's."""
        if tenants.SEPARATOR in name:
            raise NotFoundError(f"no {what} {name!r}")
        return tenants.qualify(self.tenant, name)

    def local(self, stored: str) -> str | None:
        return tenants.local_name(self.tenant, stored)

    def owns(self, stored: str) -> bool:
        return self.local(stored) is not None

    def outward(self, stored: str) -> str:
        local = self.local(stored)
        return stored if local is None else local

    def _renamed(self, values: Callable[[str], object]) -> dict[str, str]:
        """The named fields (of a message or a node's content) whose stored names become
        the tenant's local ones."""
        if self.tenant == tenants.DEFAULT_TENANT:
            return {}  # the default tenant's names are stored as they are shown
        changes = {}
        for field in _NAMED_FIELDS:
            stored = values(field)
            if isinstance(stored, str) and self.local(stored) is not None:
                changes[field] = self.outward(stored)
        return changes

    def message(self, message: M) -> M:
        """``message`` (a complete, an event) as the tenant sees it."""
        changes = self._renamed(lambda field: getattr(message, field, None))
        return msgspec.structs.replace(message, **changes) if changes else message

    def relay(self, on_event: EventCallback | None) -> EventCallback | None:
        """``on_event``, given each event as the tenant sees it."""
        if on_event is None or self.tenant == tenants.DEFAULT_TENANT:
            return on_event
        callback = on_event

        async def relay(event: EventMessage) -> None:
            outcome = callback(self.message(event))
            if inspect.isawaitable(outcome):
                await outcome

        return relay

    def node(self, node: Node) -> Node:
        """A session node whose recorded message names the tenant's run and agent locally."""
        changes = self._renamed(node.content.get)
        return dataclasses.replace(node, content={**node.content, **changes}) if changes else node


async def _collect(
    fetch: Callable[[int], Awaitable[builtins.list[T]]],
    keep: Callable[[T], bool],
    limit: int,
) -> builtins.list[T]:
    """The first ``limit`` items ``fetch(n)`` (the newest ``n``) gives that ``keep`` keeps:
    reading more until enough are kept or the source has no more."""
    asked = max(limit, 1)
    while True:
        found = await fetch(asked)
        kept = [item for item in found if keep(item)]
        if len(kept) >= limit or len(found) < asked:
            return kept[:limit]
        asked *= 4


class TenantRuns:
    """The runs of one tenant (a :class:`~roost.platform.RunControl`)."""

    def __init__(self, inner: RunControl, names: _Names, sessions: TenantSessions) -> None:
        self._inner = inner
        self._names = names
        self._sessions = sessions

    def run_id(self, run_id: str) -> str:
        return self._names.inward(run_id, "run")

    def view(self, info: RunInfo) -> RunInfo:
        return dataclasses.replace(
            info, id=self._names.outward(info.id), agent=self._names.outward(info.agent)
        )

    async def _own(self, run_id: str) -> RunInfo:
        stored = self.run_id(run_id)
        info = await self._inner.get_run(stored)
        if not self._names.owns(info.agent):
            raise NotFoundError(f"no run {run_id!r}")
        return info

    async def wait(
        self,
        run_id: str,
        *,
        session: str,
        timeout_s: float | None = None,
        on_event: EventCallback | None = None,
    ) -> CompleteMessage:
        info = await self._own(run_id)
        sess = await self._sessions.own(session)
        complete = await self._inner.wait(
            info.id, session=sess.id, timeout_s=timeout_s, on_event=self._names.relay(on_event)
        )
        return self._names.message(complete)

    async def cancel(self, run_id: str) -> None:
        await self._inner.cancel((await self._own(run_id)).id)

    async def answer(self, run_id: str, text: str) -> None:
        await self._inner.answer((await self._own(run_id)).id, text)

    async def get_run(self, run_id: str) -> RunInfo:
        return self.view(await self._own(run_id))

    async def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        async def fetch(n: int) -> list[RunInfo]:
            return await self._inner.list_runs(limit=n)

        found = await _collect(fetch, lambda info: self._names.owns(info.agent), limit)
        return [self.view(info) for info in found]


class TenantSessions:
    """Session lookups of one tenant: a session belongs to its agent's tenant."""

    def __init__(self, inner: PlatformAPI, names: _Names) -> None:
        self._inner = inner
        self._names = names

    async def own(self, ref: str) -> Session:
        """The stored session ``ref`` names (id or name), if it is this tenant's."""
        try:
            sess = await self._inner.get_session(ref)
        except NotFoundError:
            sess = None
        if sess is None or not self._names.owns(sess.agent):
            raise NotFoundError(f"no session {ref!r}")
        return sess

    def view(self, sess: Session) -> Session:
        return dataclasses.replace(sess, agent=self._names.outward(sess.agent))


class TenantSecrets:
    """The secrets of one tenant (a :class:`~roost.stores.SecretStore`)."""

    def __init__(self, inner: SecretStore, names: _Names) -> None:
        self._inner = inner
        self._names = names

    async def put(self, name: str, value: str) -> None:
        await self._inner.put(self._names.inward(name, "secret"), value)

    async def get(self, name: str) -> str:
        return await self._inner.get(self._names.inward(name, "secret"))

    async def delete(self, name: str) -> None:
        await self._inner.delete(self._names.inward(name, "secret"))

    async def exists(self, name: str) -> bool:
        if tenants.SEPARATOR in name:
            return False
        return await self._inner.exists(self._names.inward(name, "secret"))

    async def list(self) -> builtins.list[str]:
        own = (self._names.local(stored) for stored in await self._inner.list())
        return sorted(name for name in own if name is not None)


class TenantPlatform:
    """``inner`` as tenant ``tenant`` sees it (a :class:`~roost.platform.PlatformAPI`).

    ``inner`` is a platform over its own stores (the API server's), which can deploy into a
    tenant (``deploy_bundle(tenant=...)``). ``owner`` is the user this view acts for: the
    owner of every run it starts, whatever a caller passes."""

    def __init__(self, inner: PlatformAPI, tenant: str, owner: str = "") -> None:
        self._inner = inner
        self._owner = owner
        self._names = _Names(tenant)
        self._sessions = TenantSessions(inner, self._names)
        self._runs = TenantRuns(inner.harness, self._names, self._sessions)
        self._secrets = TenantSecrets(inner.secrets, self._names)

    @property
    def tenant(self) -> str:
        return self._names.tenant

    @property
    def harness(self) -> TenantRuns:
        return self._runs

    @property
    def secrets(self) -> TenantSecrets:
        return self._secrets

    async def close(self) -> None:
        """Nothing to release: the inner platform belongs to whoever made this view."""

    # --- agents -----------------------------------------------------------------------

    def _agent(self, record: AgentRecord) -> AgentRecord:
        return dataclasses.replace(record, name=self._names.outward(record.name))

    async def deploy(
        self, path: Path | str, *, on_output: OutputCallback | None = None
    ) -> AgentRecord:
        bundle, folder = await pack_agent(path)
        return await self.deploy_bundle(bundle, source=str(folder), on_output=on_output)

    async def deploy_bundle(
        self,
        bundle: bytes,
        *,
        source: str = "",
        on_output: OutputCallback | None = None,
        tenant: str | None = None,
    ) -> AgentRecord:
        if tenant not in (None, self.tenant):
            raise InvalidRequestError(f"this view deploys into tenant {self.tenant!r} only")
        record = await self._inner.deploy_bundle(
            bundle, source=source, on_output=on_output, tenant=self.tenant
        )
        return self._agent(record)

    async def get_agent(self, name: str) -> AgentRecord:
        stored = self._names.inward(name, "agent")
        try:
            return self._agent(await self._inner.get_agent(stored))
        except NotFoundError:
            known = ", ".join(a.name for a in await self.list_agents()) or "none"
            raise NotFoundError(f"agent {name!r} is not deployed (deployed: {known})") from None

    async def list_agents(self) -> list[AgentRecord]:
        return [self._agent(a) for a in await self._inner.list_agents() if self._names.owns(a.name)]

    async def delete_agent(self, name: str) -> None:
        await self.get_agent(name)  # another tenant's agent is "not deployed", never deleted
        await self._inner.delete_agent(self._names.inward(name, "agent"))

    # --- runs -------------------------------------------------------------------------

    async def _run_args(
        self, agent: str, session: str | None, run_id: str | None
    ) -> tuple[str, str | None, str]:
        """The stored names of a run's agent, session and id (each this tenant's)."""
        await self.get_agent(agent)  # the not-deployed error lists this tenant's agents
        stored_agent = self._names.inward(agent, "agent")
        stored_session = (await self._sessions.own(session)).id if session else None
        return stored_agent, stored_session, self._runs.run_id(run_id or new_id())

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
        stored_agent, stored_session, stored_run = await self._run_args(agent, session, run_id)
        result = await self._inner.run(
            stored_agent, input, session=stored_session, branch=branch, timeout_s=timeout_s,
            on_event=self._names.relay(on_event), run_id=stored_run, owner=self._owner or owner,
        )  # fmt: skip
        return dataclasses.replace(
            result,
            session=self._sessions.view(result.session),
            complete=self._names.message(result.complete),
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
        stored_agent, stored_session, stored_run = await self._run_args(agent, session, run_id)
        started = await self._inner.start(
            stored_agent, input, session=stored_session, branch=branch, timeout_s=timeout_s,
            run_id=stored_run, owner=self._owner or owner,
        )  # fmt: skip
        return dataclasses.replace(
            started,
            session=self._sessions.view(started.session),
            run_id=self._names.outward(started.run_id),
        )

    # --- sessions ---------------------------------------------------------------------

    async def list_sessions(self, agent: str | None = None, limit: int = 50) -> list[Session]:
        stored_agent = self._names.inward(agent, "agent") if agent is not None else None

        async def fetch(n: int) -> list[Session]:
            return await self._inner.list_sessions(agent=stored_agent, limit=n)

        found = await _collect(fetch, lambda s: self._names.owns(s.agent), limit)
        return [self._sessions.view(s) for s in found]

    async def get_session(self, ref: str) -> Session:
        return self._sessions.view(await self._sessions.own(ref))

    async def list_branches(self, session: str) -> list[Branch]:
        return await self._inner.list_branches((await self._sessions.own(session)).id)

    async def session_nodes(self, session: str, branch: str | None = None) -> list[Node]:
        nodes = await self._inner.session_nodes((await self._sessions.own(session)).id, branch)
        return [self._names.node(node) for node in nodes]

    async def fork(self, session: str, from_node: str, branch: str | None = None) -> Branch:
        return await self._inner.fork((await self._sessions.own(session)).id, from_node, branch)

    async def promote(self, session: str, branch: str) -> None:
        await self._inner.promote((await self._sessions.own(session)).id, branch)

    # --- models -----------------------------------------------------------------------

    def _model(self, record: ModelRecord) -> ModelRecord:
        return dataclasses.replace(
            record,
            name=self._names.outward(record.name),
            api_key_secret=self._names.outward(record.api_key_secret),
        )

    async def list_models(self) -> list[ModelRecord]:
        """The models this tenant's runs can use: its own, and the shared ones it has none
        of the same name of."""
        visible = await visible_models(self._inner.list_models, self.tenant)
        return [self._model(m) if self._names.owns(m.name) else m for m in visible]

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
        """Register a model of this tenant's; its API key comes from this tenant's secret."""
        secret = self._names.inward(api_key_secret, "secret") if api_key_secret else ""
        record = await self._inner.add_model(
            name=self._names.inward(name, "model"), engine=engine, target=target, kind=kind,
            base_url=base_url, api_key_secret=secret, dimension=dimension, replace=replace,
        )  # fmt: skip
        return self._model(record)

    async def remove_model(self, name: str) -> None:
        """Unregister one of this tenant's models (a shared one is the operator's)."""
        stored = self._names.inward(name, "model")
        if not any(m.name == stored for m in await self._inner.list_models()):
            raise NotFoundError(f"unknown model {name!r}")
        await self._inner.remove_model(stored)

    async def available_models(
        self, engine: str | None = None, base_url: str = ""
    ) -> list[AvailableModel]:
        return await self._inner.available_models(engine, base_url)


__all__ = ["TenantPlatform", "TenantRuns", "TenantSecrets", "TenantSessions", "refuse_tenant"]
