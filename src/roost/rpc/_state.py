"""Session state over gRPC: a servicer around any :class:`~roost.stores.StateStore`, and a
client that is one. Nodes cross the wire with their content as exact JSON, so a node read
back through the client has the id its content hashes to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc.aio

from roost.protocol import InvalidRequestError
from roost.rpc._client import RpcClient
from roost.rpc._convert import (
    branch_from_pb,
    branch_to_pb,
    dumps_json,
    loads_json,
    node_from_pb,
    node_to_pb,
    opt,
    session_from_pb,
    session_to_pb,
)
from roost.rpc._gen import state_pb2 as pb
from roost.rpc._gen import state_pb2_grpc
from roost.rpc._service import Context, ServicerBase, rpc_method
from roost.stores import Branch, Node, NodeKind, Session, StateStore

_SERVICE = pb.DESCRIPTOR.services_by_name["State"].full_name


class StateServicer(ServicerBase, state_pb2_grpc.StateServicer):
    """Serves ``roost.v1.State`` from ``store`` (normally the SQL state store)."""

    role = "state"
    service_name = _SERVICE

    def __init__(self, store: StateStore, *, node: str | None = None) -> None:
        super().__init__(node=node)
        self.store = store

    def add_to_server(self, server: grpc.aio.Server) -> None:
        state_pb2_grpc.add_StateServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    # --- sessions ----------------------------------------------------------------------

    @rpc_method
    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: Context
    ) -> pb.SessionReply:
        record = await self.store.create_session(request.agent, opt(request, "name"))
        return pb.SessionReply(session=session_to_pb(record))

    @rpc_method
    async def GetSession(self, request: pb.GetSessionRequest, context: Context) -> pb.SessionReply:
        return pb.SessionReply(session=session_to_pb(await self.store.get_session(request.session)))

    @rpc_method
    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Context
    ) -> pb.SessionList:
        records = await self.store.list_sessions(opt(request, "agent"), request.limit)
        return pb.SessionList(sessions=[session_to_pb(s) for s in records])

    @rpc_method
    async def SetStatus(self, request: pb.SetStatusRequest, context: Context) -> pb.SessionReply:
        record = await self.store.set_status(request.session, request.status)
        return pb.SessionReply(session=session_to_pb(record))

    # --- nodes -------------------------------------------------------------------------

    @rpc_method
    async def AppendNode(self, request: pb.AppendNodeRequest, context: Context) -> pb.NodeReply:
        content = loads_json(request.content_json, "content_json")
        record = await self.store.append_node(
            request.session, request.branch, request.kind, content
        )
        return pb.NodeReply(node=node_to_pb(record))

    @rpc_method
    async def GetNode(self, request: pb.GetNodeRequest, context: Context) -> pb.NodeReply:
        return pb.NodeReply(node=node_to_pb(await self.store.get_node(request.node_id)))

    @rpc_method
    async def ListNodes(self, request: pb.ListNodesRequest, context: Context) -> pb.NodeList:
        records = await self.store.list_nodes(request.session, opt(request, "branch"))
        return pb.NodeList(nodes=[node_to_pb(n) for n in records])

    @rpc_method
    async def AllNodes(self, request: pb.AllNodesRequest, context: Context) -> pb.NodeList:
        records = await self.store.all_nodes(request.session)
        return pb.NodeList(nodes=[node_to_pb(n) for n in records])

    @rpc_method
    async def Ancestors(self, request: pb.AncestorsRequest, context: Context) -> pb.NodeList:
        records = await self.store.ancestors(request.node_id)
        return pb.NodeList(nodes=[node_to_pb(n) for n in records])

    # --- branches ----------------------------------------------------------------------

    @rpc_method
    async def Fork(self, request: pb.ForkRequest, context: Context) -> pb.BranchReply:
        record = await self.store.fork(
            request.session, request.from_node, opt(request, "new_branch")
        )
        return pb.BranchReply(branch=branch_to_pb(record))

    @rpc_method
    async def Promote(self, request: pb.PromoteRequest, context: Context) -> pb.SessionReply:
        record = await self.store.promote(request.session, request.branch)
        return pb.SessionReply(session=session_to_pb(record))

    @rpc_method
    async def GetBranch(self, request: pb.GetBranchRequest, context: Context) -> pb.BranchReply:
        record = await self.store.get_branch(request.session, request.branch)
        return pb.BranchReply(branch=branch_to_pb(record))

    @rpc_method
    async def ListBranches(
        self, request: pb.ListBranchesRequest, context: Context
    ) -> pb.BranchList:
        records = await self.store.list_branches(request.session)
        return pb.BranchList(branches=[branch_to_pb(b) for b in records])


class RemoteStateStore(RpcClient):
    """A :class:`~roost.stores.StateStore` whose every method is a call to the state
    service at ``address`` (``host:port``), with a deadline of ``timeout_s`` each."""

    service_name = _SERVICE

    # --- sessions ----------------------------------------------------------------------

    async def create_session(self, agent: str, name: str | None = None) -> Session:
        request = pb.CreateSessionRequest(agent=agent, name=name)
        return session_from_pb((await self.call("CreateSession", request, pb.SessionReply)).session)

    async def get_session(self, session: str) -> Session:
        request = pb.GetSessionRequest(session=session)
        return session_from_pb((await self.call("GetSession", request, pb.SessionReply)).session)

    async def list_sessions(self, agent: str | None = None, limit: int = 50) -> list[Session]:
        request = pb.ListSessionsRequest(agent=agent, limit=limit)
        reply = await self.call("ListSessions", request, pb.SessionList)
        return [session_from_pb(s) for s in reply.sessions]

    async def set_status(self, session: str, status: str) -> Session:
        request = pb.SetStatusRequest(session=session, status=status)
        return session_from_pb((await self.call("SetStatus", request, pb.SessionReply)).session)

    # --- nodes -------------------------------------------------------------------------

    async def append_node(
        self, session: str, branch: str, kind: NodeKind | str, content: dict[str, Any]
    ) -> Node:
        if not isinstance(content, dict):  # what the store says, without a round trip
            raise InvalidRequestError("node content must be a JSON object")
        request = pb.AppendNodeRequest(
            session=session,
            branch=branch,
            kind=kind,
            content_json=dumps_json(content, "node content"),
        )
        return node_from_pb((await self.call("AppendNode", request, pb.NodeReply)).node)

    async def get_node(self, node_id: str) -> Node:
        request = pb.GetNodeRequest(node_id=node_id)
        return node_from_pb((await self.call("GetNode", request, pb.NodeReply)).node)

    async def list_nodes(self, session: str, branch: str | None = None) -> list[Node]:
        request = pb.ListNodesRequest(session=session, branch=branch)
        reply = await self.call("ListNodes", request, pb.NodeList)
        return [node_from_pb(n) for n in reply.nodes]

    async def all_nodes(self, session: str) -> list[Node]:
        reply = await self.call("AllNodes", pb.AllNodesRequest(session=session), pb.NodeList)
        return [node_from_pb(n) for n in reply.nodes]

    async def ancestors(self, node_id: str) -> list[Node]:
        reply = await self.call("Ancestors", pb.AncestorsRequest(node_id=node_id), pb.NodeList)
        return [node_from_pb(n) for n in reply.nodes]

    # --- branches ----------------------------------------------------------------------

    async def fork(self, session: str, from_node: str, new_branch: str | None = None) -> Branch:
        request = pb.ForkRequest(session=session, from_node=from_node, new_branch=new_branch)
        return branch_from_pb((await self.call("Fork", request, pb.BranchReply)).branch)

    async def promote(self, session: str, branch: str) -> Session:
        request = pb.PromoteRequest(session=session, branch=branch)
        return session_from_pb((await self.call("Promote", request, pb.SessionReply)).session)

    async def get_branch(self, session: str, branch: str) -> Branch:
        request = pb.GetBranchRequest(session=session, branch=branch)
        return branch_from_pb((await self.call("GetBranch", request, pb.BranchReply)).branch)

    async def list_branches(self, session: str) -> list[Branch]:
        request = pb.ListBranchesRequest(session=session)
        reply = await self.call("ListBranches", request, pb.BranchList)
        return [branch_from_pb(b) for b in reply.branches]


if TYPE_CHECKING:  # mypy proves the client is a drop-in for the SQL state store

    def _conforms(client: RemoteStateStore) -> StateStore:
        return client
