"""Secrets over gRPC: a servicer around any :class:`~roost.stores.SecretStore`, and a client
that is one. Values cross the wire in clear (the service encrypts them at rest): serve it on
loopback or a trusted network."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

import grpc.aio

from roost.protocol import ErrorCode
from roost.rpc._client import RpcClient
from roost.rpc._gen import secret_pb2 as pb
from roost.rpc._gen import secret_pb2_grpc
from roost.rpc._service import Context, ServicerBase, rpc_method
from roost.stores import SecretKeyError, SecretStore

_SERVICE = pb.DESCRIPTOR.services_by_name["Secret"].full_name


class SecretServicer(ServicerBase, secret_pb2_grpc.SecretServicer):
    """Serves ``roost.v1.Secret`` from ``store`` (normally the SQL secret store, whose key
    only the secret service's node needs)."""

    role = "secret"
    service_name = _SERVICE

    def __init__(self, store: SecretStore, *, node: str | None = None) -> None:
        super().__init__(node=node)
        self.store = store

    def add_to_server(self, server: grpc.aio.Server) -> None:
        secret_pb2_grpc.add_SecretServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    @rpc_method
    async def Put(self, request: pb.PutSecretRequest, context: Context) -> pb.PutSecretReply:
        await self.store.put(request.name, request.value)
        return pb.PutSecretReply()

    @rpc_method
    async def Get(self, request: pb.GetSecretRequest, context: Context) -> pb.GetSecretReply:
        return pb.GetSecretReply(value=await self.store.get(request.name))

    @rpc_method
    async def Delete(
        self, request: pb.DeleteSecretRequest, context: Context
    ) -> pb.DeleteSecretReply:
        await self.store.delete(request.name)
        return pb.DeleteSecretReply()

    @rpc_method
    async def Exists(
        self, request: pb.ExistsSecretRequest, context: Context
    ) -> pb.ExistsSecretReply:
        return pb.ExistsSecretReply(exists=await self.store.exists(request.name))

    @rpc_method
    async def List(self, request: pb.ListSecretsRequest, context: Context) -> pb.ListSecretsReply:
        return pb.ListSecretsReply(names=await self.store.list())


class RemoteSecretStore(RpcClient):
    """A :class:`~roost.stores.SecretStore` whose every method is a call to the secret
    service at ``address`` (``host:port``), with a deadline of ``timeout_s`` each. A key
    problem on the service's side arrives as :class:`~roost.stores.SecretKeyError`."""

    service_name = _SERVICE
    error_types = {ErrorCode.AUTH: SecretKeyError}

    async def put(self, name: str, value: str) -> None:
        await self.call("Put", pb.PutSecretRequest(name=name, value=value), pb.PutSecretReply)

    async def get(self, name: str) -> str:
        return (await self.call("Get", pb.GetSecretRequest(name=name), pb.GetSecretReply)).value

    async def delete(self, name: str) -> None:
        await self.call("Delete", pb.DeleteSecretRequest(name=name), pb.DeleteSecretReply)

    async def exists(self, name: str) -> bool:
        request = pb.ExistsSecretRequest(name=name)
        return (await self.call("Exists", request, pb.ExistsSecretReply)).exists

    async def list(self) -> builtins.list[str]:
        return list((await self.call("List", pb.ListSecretsRequest(), pb.ListSecretsReply)).names)


if TYPE_CHECKING:  # mypy proves the client is a drop-in for the SQL secret store

    def _conforms(client: RemoteSecretStore) -> SecretStore:
        return client
