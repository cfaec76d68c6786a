"""The registry over gRPC: a servicer around any :class:`~roost.stores.RegistryStore`, and
a client that is one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc.aio

from roost.rpc._client import RpcClient
from roost.rpc._convert import (
    agent_from_pb,
    agent_to_pb,
    capability_from_pb,
    capability_to_pb,
    dumps_json,
    loads_json,
    model_from_pb,
    model_to_pb,
    opt,
    worker_from_pb,
    worker_to_pb,
)
from roost.rpc._gen import registry_pb2 as pb
from roost.rpc._gen import registry_pb2_grpc
from roost.rpc._service import Context, ServicerBase, rpc_method
from roost.stores import AgentRecord, Capability, ModelRecord, RegistryStore, WorkerRecord

_SERVICE = pb.DESCRIPTOR.services_by_name["Registry"].full_name


class RegistryServicer(ServicerBase, registry_pb2_grpc.RegistryServicer):
    """Serves ``roost.v1.Registry`` from ``store`` (normally the SQL registry)."""

    role = "registry"
    service_name = _SERVICE

    def __init__(self, store: RegistryStore, *, node: str | None = None) -> None:
        super().__init__(node=node)
        self.store = store

    def add_to_server(self, server: grpc.aio.Server) -> None:
        registry_pb2_grpc.add_RegistryServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    # --- agents ------------------------------------------------------------------------

    @rpc_method
    async def NextAgentVersion(
        self, request: pb.NextAgentVersionRequest, context: Context
    ) -> pb.NextAgentVersionReply:
        return pb.NextAgentVersionReply(version=await self.store.next_agent_version(request.name))

    @rpc_method
    async def PutAgent(self, request: pb.PutAgentRequest, context: Context) -> pb.AgentReply:
        manifest = loads_json(request.manifest_json, "manifest_json")
        record = await self.store.put_agent(request.name, request.version, manifest, request.path)
        return pb.AgentReply(agent=agent_to_pb(record))

    @rpc_method
    async def DeployAgent(self, request: pb.DeployAgentRequest, context: Context) -> pb.AgentReply:
        manifest = loads_json(request.manifest_json, "manifest_json")
        record = await self.store.deploy_agent(request.name, manifest, request.path)
        return pb.AgentReply(agent=agent_to_pb(record))

    @rpc_method
    async def GetAgent(self, request: pb.GetAgentRequest, context: Context) -> pb.GetAgentReply:
        record = await self.store.get_agent(request.name, opt(request, "version"))
        return pb.GetAgentReply(agent=agent_to_pb(record) if record is not None else None)

    @rpc_method
    async def ListAgents(self, request: pb.ListAgentsRequest, context: Context) -> pb.AgentList:
        return pb.AgentList(agents=[agent_to_pb(a) for a in await self.store.list_agents()])

    @rpc_method
    async def AgentVersions(
        self, request: pb.AgentVersionsRequest, context: Context
    ) -> pb.AgentList:
        records = await self.store.agent_versions(request.name)
        return pb.AgentList(agents=[agent_to_pb(a) for a in records])

    @rpc_method
    async def DeleteAgent(
        self, request: pb.DeleteAgentRequest, context: Context
    ) -> pb.DeleteAgentReply:
        return pb.DeleteAgentReply(deleted=await self.store.delete_agent(request.name))

    # --- models ------------------------------------------------------------------------

    @rpc_method
    async def AddModel(self, request: pb.AddModelRequest, context: Context) -> pb.AddModelReply:
        await self.store.add_model(model_from_pb(request.model), replace=request.replace)
        return pb.AddModelReply()

    @rpc_method
    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelReply:
        record = await self.store.get_model(request.name)
        return pb.GetModelReply(model=model_to_pb(record) if record is not None else None)

    @rpc_method
    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ModelList:
        return pb.ModelList(models=[model_to_pb(m) for m in await self.store.list_models()])

    @rpc_method
    async def RemoveModel(
        self, request: pb.RemoveModelRequest, context: Context
    ) -> pb.RemoveModelReply:
        await self.store.remove_model(request.name)
        return pb.RemoveModelReply()

    # --- capabilities ------------------------------------------------------------------

    @rpc_method
    async def SetCapability(
        self, request: pb.SetCapabilityRequest, context: Context
    ) -> pb.CapabilityReply:
        details = loads_json(request.details_json, "details_json")
        record = await self.store.set_capability(request.service, details)
        return pb.CapabilityReply(capability=capability_to_pb(record))

    @rpc_method
    async def GetCapability(
        self, request: pb.GetCapabilityRequest, context: Context
    ) -> pb.GetCapabilityReply:
        record = await self.store.get_capability(request.service)
        return pb.GetCapabilityReply(
            capability=capability_to_pb(record) if record is not None else None
        )

    @rpc_method
    async def ListCapabilities(
        self, request: pb.ListCapabilitiesRequest, context: Context
    ) -> pb.CapabilityList:
        records = await self.store.list_capabilities()
        return pb.CapabilityList(capabilities=[capability_to_pb(c) for c in records])

    @rpc_method
    async def RemoveCapability(
        self, request: pb.RemoveCapabilityRequest, context: Context
    ) -> pb.RemoveCapabilityReply:
        await self.store.remove_capability(request.service)
        return pb.RemoveCapabilityReply()

    # --- agent bundles -----------------------------------------------------------------

    @rpc_method
    async def PutAgentBundle(
        self, request: pb.PutAgentBundleRequest, context: Context
    ) -> pb.PutAgentBundleReply:
        digest = await self.store.put_agent_bundle(request.name, request.version, request.bundle)
        return pb.PutAgentBundleReply(sha256=digest)

    @rpc_method
    async def GetAgentBundle(
        self, request: pb.GetAgentBundleRequest, context: Context
    ) -> pb.GetAgentBundleReply:
        bundle = await self.store.get_agent_bundle(request.name, request.version)
        return pb.GetAgentBundleReply(bundle=bundle)

    # --- workers -----------------------------------------------------------------------

    @rpc_method
    async def RegisterWorker(
        self, request: pb.RegisterWorkerRequest, context: Context
    ) -> pb.WorkerReply:
        capabilities = opt(request, "capabilities_json")
        record = await self.store.register_worker(
            request.worker_id,
            node=request.node,
            role=request.role,
            pid=request.pid,
            address=request.address,
            capabilities=(
                loads_json(capabilities, "capabilities_json") if capabilities is not None else None
            ),
        )
        return pb.WorkerReply(worker=worker_to_pb(record))

    @rpc_method
    async def HeartbeatWorker(
        self, request: pb.HeartbeatWorkerRequest, context: Context
    ) -> pb.HeartbeatWorkerReply:
        capabilities = opt(request, "capabilities_json")
        known = await self.store.heartbeat_worker(
            request.worker_id,
            loads_json(capabilities, "capabilities_json") if capabilities is not None else None,
        )
        return pb.HeartbeatWorkerReply(known=known)

    @rpc_method
    async def ListWorkers(self, request: pb.ListWorkersRequest, context: Context) -> pb.WorkerList:
        records = await self.store.list_workers(live_within_s=opt(request, "live_within_s"))
        return pb.WorkerList(workers=[worker_to_pb(w) for w in records])

    @rpc_method
    async def RemoveWorker(
        self, request: pb.RemoveWorkerRequest, context: Context
    ) -> pb.RemoveWorkerReply:
        await self.store.remove_worker(request.worker_id)
        return pb.RemoveWorkerReply()

    @rpc_method
    async def ExpireWorkers(
        self, request: pb.ExpireWorkersRequest, context: Context
    ) -> pb.ExpireWorkersReply:
        return pb.ExpireWorkersReply(expired=await self.store.expire_workers(request.older_than_s))


class RemoteRegistryStore(RpcClient):
    """A :class:`~roost.stores.RegistryStore` whose every method is a call to the registry
    service at ``address`` (``host:port``), with a deadline of ``timeout_s`` each."""

    service_name = _SERVICE

    # --- agents ------------------------------------------------------------------------

    async def next_agent_version(self, name: str) -> int:
        request = pb.NextAgentVersionRequest(name=name)
        return (await self.call("NextAgentVersion", request, pb.NextAgentVersionReply)).version

    async def put_agent(
        self, name: str, version: int, manifest: dict[str, Any], path: str
    ) -> AgentRecord:
        manifest_json = dumps_json(manifest, "the manifest")
        request = pb.PutAgentRequest(
            name=name, version=version, manifest_json=manifest_json, path=path
        )
        return agent_from_pb((await self.call("PutAgent", request, pb.AgentReply)).agent)

    async def deploy_agent(self, name: str, manifest: dict[str, Any], path: str) -> AgentRecord:
        request = pb.DeployAgentRequest(
            name=name, manifest_json=dumps_json(manifest, "the manifest"), path=path
        )
        return agent_from_pb((await self.call("DeployAgent", request, pb.AgentReply)).agent)

    async def get_agent(self, name: str, version: int | None = None) -> AgentRecord | None:
        request = pb.GetAgentRequest(name=name, version=version)
        reply = await self.call("GetAgent", request, pb.GetAgentReply)
        return agent_from_pb(reply.agent) if reply.HasField("agent") else None

    async def list_agents(self) -> list[AgentRecord]:
        reply = await self.call("ListAgents", pb.ListAgentsRequest(), pb.AgentList)
        return [agent_from_pb(a) for a in reply.agents]

    async def agent_versions(self, name: str) -> list[AgentRecord]:
        reply = await self.call("AgentVersions", pb.AgentVersionsRequest(name=name), pb.AgentList)
        return [agent_from_pb(a) for a in reply.agents]

    async def delete_agent(self, name: str) -> int:
        request = pb.DeleteAgentRequest(name=name)
        return (await self.call("DeleteAgent", request, pb.DeleteAgentReply)).deleted

    # --- models ------------------------------------------------------------------------

    async def add_model(self, record: ModelRecord, *, replace: bool = False) -> None:
        request = pb.AddModelRequest(model=model_to_pb(record), replace=replace)
        await self.call("AddModel", request, pb.AddModelReply)

    async def get_model(self, name: str) -> ModelRecord | None:
        reply = await self.call("GetModel", pb.GetModelRequest(name=name), pb.GetModelReply)
        return model_from_pb(reply.model) if reply.HasField("model") else None

    async def list_models(self) -> list[ModelRecord]:
        reply = await self.call("ListModels", pb.ListModelsRequest(), pb.ModelList)
        return [model_from_pb(m) for m in reply.models]

    async def remove_model(self, name: str) -> None:
        await self.call("RemoveModel", pb.RemoveModelRequest(name=name), pb.RemoveModelReply)

    # --- capabilities ------------------------------------------------------------------

    async def set_capability(self, service: str, details: dict[str, Any]) -> Capability:
        request = pb.SetCapabilityRequest(
            service=service, details_json=dumps_json(details, "the capability details")
        )
        reply = await self.call("SetCapability", request, pb.CapabilityReply)
        return capability_from_pb(reply.capability)

    async def get_capability(self, service: str) -> Capability | None:
        request = pb.GetCapabilityRequest(service=service)
        reply = await self.call("GetCapability", request, pb.GetCapabilityReply)
        return capability_from_pb(reply.capability) if reply.HasField("capability") else None

    async def list_capabilities(self) -> list[Capability]:
        reply = await self.call("ListCapabilities", pb.ListCapabilitiesRequest(), pb.CapabilityList)
        return [capability_from_pb(c) for c in reply.capabilities]

    async def remove_capability(self, service: str) -> None:
        request = pb.RemoveCapabilityRequest(service=service)
        await self.call("RemoveCapability", request, pb.RemoveCapabilityReply)

    # --- agent bundles -----------------------------------------------------------------

    async def put_agent_bundle(self, name: str, version: int, bundle: bytes) -> str:
        request = pb.PutAgentBundleRequest(name=name, version=version, bundle=bundle)
        return (await self.call("PutAgentBundle", request, pb.PutAgentBundleReply)).sha256

    async def get_agent_bundle(self, name: str, version: int) -> bytes | None:
        request = pb.GetAgentBundleRequest(name=name, version=version)
        reply = await self.call("GetAgentBundle", request, pb.GetAgentBundleReply)
        return reply.bundle if reply.HasField("bundle") else None

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
        request = pb.RegisterWorkerRequest(
            worker_id=worker_id,
            node=node,
            role=role,
            pid=pid,
            address=address,
            capabilities_json=(
                dumps_json(capabilities, "the worker capabilities")
                if capabilities is not None
                else None
            ),
        )
        return worker_from_pb((await self.call("RegisterWorker", request, pb.WorkerReply)).worker)

    async def heartbeat_worker(
        self, worker_id: str, capabilities: dict[str, Any] | None = None
    ) -> bool:
        request = pb.HeartbeatWorkerRequest(
            worker_id=worker_id,
            capabilities_json=(
                dumps_json(capabilities, "the worker capabilities")
                if capabilities is not None
                else None
            ),
        )
        return (await self.call("HeartbeatWorker", request, pb.HeartbeatWorkerReply)).known

    async def list_workers(self, *, live_within_s: float | None = None) -> list[WorkerRecord]:
        request = pb.ListWorkersRequest(live_within_s=live_within_s)
        reply = await self.call("ListWorkers", request, pb.WorkerList)
        return [worker_from_pb(w) for w in reply.workers]

    async def remove_worker(self, worker_id: str) -> None:
        request = pb.RemoveWorkerRequest(worker_id=worker_id)
        await self.call("RemoveWorker", request, pb.RemoveWorkerReply)

    async def expire_workers(self, older_than_s: float) -> int:
        request = pb.ExpireWorkersRequest(older_than_s=older_than_s)
        return (await self.call("ExpireWorkers", request, pb.ExpireWorkersReply)).expired


if TYPE_CHECKING:  # mypy proves the client is a drop-in for the SQL registry

    def _conforms(client: RemoteRegistryStore) -> RegistryStore:
        return client
