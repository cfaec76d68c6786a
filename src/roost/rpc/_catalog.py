"""The model catalog over gRPC: which models each engine can serve.

The servicer takes the listing as a coroutine function (``Platform.available_models`` in a
deployment) so this package stays independent of the platform that implements it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import grpc.aio

from roost.rpc._client import RpcClient
from roost.rpc._convert import opt
from roost.rpc._gen import catalog_pb2 as pb
from roost.rpc._gen import catalog_pb2_grpc
from roost.rpc._service import Context, ServicerBase, rpc_method
from roost.stores import AvailableModel

_SERVICE = pb.DESCRIPTOR.services_by_name["Catalog"].full_name


class AvailableModelLike(Protocol):
    """What a catalog listing yields (any object with these attributes)."""

    @property
    def engine(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def where(self) -> str: ...


ListAvailable = Callable[[str | None, str], Awaitable[Sequence[AvailableModelLike]]]
"""``(engine or None for every engine, base_url or "") -> models``."""


class CatalogServicer(ServicerBase, catalog_pb2_grpc.CatalogServicer):
    """Serves ``roost.v1.Catalog`` from ``list_available``."""

    role = "catalog"
    service_name = _SERVICE

    def __init__(self, list_available: ListAvailable, *, node: str | None = None) -> None:
        super().__init__(node=node)
        self.list_available = list_available

    def add_to_server(self, server: grpc.aio.Server) -> None:
        catalog_pb2_grpc.add_CatalogServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    @rpc_method
    async def ListAvailable(
        self, request: pb.ListAvailableRequest, context: Context
    ) -> pb.ListAvailableReply:
        found = await self.list_available(opt(request, "engine"), request.base_url)
        return pb.ListAvailableReply(
            models=[pb.AvailableModel(engine=m.engine, model=m.model, where=m.where) for m in found]
        )


class CatalogClient(RpcClient):
    """Asks the catalog service at ``address`` (``host:port``) what can be served."""

    service_name = _SERVICE

    async def list_available(
        self, engine: str | None = None, base_url: str = ""
    ) -> list[AvailableModel]:
        """Models each engine (or only ``engine``) can serve; ``base_url`` also asks the
        engine at that URL."""
        request = pb.ListAvailableRequest(engine=engine, base_url=base_url)
        reply = await self.call("ListAvailable", request, pb.ListAvailableReply)
        return [AvailableModel(engine=m.engine, model=m.model, where=m.where) for m in reply.models]
