"""The platform as a client of a running deployment (distributed mode).

:class:`RemotePlatform` has the methods of :class:`Platform` that the CLI uses, served by the
deployment's coordination services over gRPC: the harness (deploy, runs, fork, promote), the
registry (agents, models), the state service (sessions, nodes), the secret service and the
catalog. The CLI picks it when ``client.toml`` (or ``ROOST_CLIENT__HARNESS``) names a
harness; every command then works unchanged against the deployment.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roost.agents import (
    OutputCallback,
    pack_agent,
)
from roost.config import ClientSettings, Settings
from roost.platform._harness_rpc import RemoteHarness
from roost.platform._models import model_record
from roost.platform._tenant import refuse_tenant
from roost.protocol import NotFoundError
from roost.rpc import (
    CatalogClient,
    RemoteRegistryStore,
    RemoteSecretStore,
    RemoteStateStore,
    RpcSecurity,
)
from roost.runtime import EventCallback, RunResult, RunStarted
from roost.stores import AgentRecord, AvailableModel, Branch, ModelRecord, Node, Session, Stores


def remote_stores(settings: Settings) -> Stores:
    """Registry, state and secrets as clients of the deployment's coordination services
    (``[distributed]`` addresses), for workers that do not open the database."""
    config = settings.distributed
    timeout = config.connect_timeout_s
    security = RpcSecurity.load(config.security)
    registry = RemoteRegistryStore(config.address("registry"), timeout_s=timeout, security=security)
    state = RemoteStateStore(config.address("state"), timeout_s=timeout, security=security)
    secrets = RemoteSecretStore(config.address("secret"), timeout_s=timeout, security=security)
    return Stores(
        registry=registry,
        state=state,
        secrets=secrets,
        closers=[registry.close, state.close, secrets.close],
    )


class RemotePlatform:
    """A deployment seen from a client (a :class:`~roost.platform.PlatformAPI`). Close
    with :meth:`close`."""

    def __init__(self, client: ClientSettings) -> None:
        self.client = client
        options: dict[str, Any] = {
            "timeout_s": client.timeout_s,
            "security": RpcSecurity.load(client.security),
        }
        self.harness = RemoteHarness(client.address("harness"), **options)
        self.registry = RemoteRegistryStore(client.address("registry"), **options)
        self.state = RemoteStateStore(client.address("state"), **options)
        self.secrets = RemoteSecretStore(client.address("secret"), **options)
        self.catalog = CatalogClient(client.address("catalog"), **options)

    async def close(self) -> None:
        await asyncio.gather(
            self.harness.close(),
            self.registry.close(),
            self.state.close(),
            self.secrets.close(),
            self.catalog.close(),
        )

    async def __aenter__(self) -> RemotePlatform:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- agents ------------------------------------------------------------------------

    async def deploy(
        self, path: Path | str, *, on_output: OutputCallback | None = None
    ) -> AgentRecord:
        """Pack the agent folder and deploy it on the deployment (which validates it against
        its live workers and installs its dependencies). The install's output is not
        streamed over gRPC: ``on_output`` gets its last lines when the deploy is done."""
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
        refuse_tenant(tenant)
        return await self.harness.deploy(bundle, source, on_output=on_output)

    async def get_agent(self, name: str) -> AgentRecord:
        record = await self.registry.get_agent(name)
        if record is None:
            names = ", ".join(a.name for a in await self.registry.list_agents()) or "none"
            raise NotFoundError(f"agent {name!r} is not deployed (deployed: {names})")
        return record

    async def list_agents(self) -> list[AgentRecord]:
        return await self.registry.list_agents()

    async def delete_agent(self, name: str) -> None:
        await self.harness.delete_agent(name)

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
        return await self.harness.run(
            agent,
            input,
            session=session,
            branch=branch,
            timeout_s=timeout_s,
            on_event=on_event,
            run_id=run_id,
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
        return await self.harness.start(
            agent, input, session=session, branch=branch, timeout_s=timeout_s, run_id=run_id,
            owner=owner,
        )  # fmt: skip

    # --- sessions ----------------------------------------------------------------------

    async def list_sessions(self, agent: str | None = None, limit: int = 50) -> list[Session]:
        return await self.state.list_sessions(agent=agent, limit=limit)

    async def get_session(self, ref: str) -> Session:
        return await self.state.get_session(ref)

    async def list_branches(self, session: str) -> list[Branch]:
        return await self.state.list_branches(session)

    async def session_nodes(self, session: str, branch: str | None = None) -> list[Node]:
        sess = await self.get_session(session)
        return await self.state.list_nodes(sess.id, branch or sess.main_branch)

    async def fork(self, session: str, from_node: str, branch: str | None = None) -> Branch:
        return await self.harness.fork(session, from_node, branch)

    async def promote(self, session: str, branch: str) -> None:
        await self.harness.promote(session, branch)

    # --- models --------------------------------------------------------------------------

    async def list_models(self) -> list[ModelRecord]:
        return await self.registry.list_models()

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
        await self.registry.add_model(record, replace=replace)
        return record

    async def remove_model(self, name: str) -> None:
        if await self.registry.get_model(name) is None:
            raise NotFoundError(f"unknown model {name!r}; see `roost model list`")
        await self.registry.remove_model(name)

    async def available_models(
        self, engine: str | None = None, base_url: str = ""
    ) -> list[AvailableModel]:
        return await self.catalog.list_available(engine, base_url)


if TYPE_CHECKING:  # both platforms are PlatformAPIs: mypy checks every method's signature
    from roost.platform._api import PlatformAPI
    from roost.platform._local import Platform

    def _check(local: Platform, remote: RemotePlatform) -> tuple[PlatformAPI, PlatformAPI]:
        return local, remote
