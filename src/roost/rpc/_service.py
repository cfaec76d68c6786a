"""What every coordination service shares: the servicer base class with its ``Ping``, the
error boundary of every RPC, and the limits both ends agree on."""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import grpc
import grpc.aio

from roost import __version__
from roost.protocol import RoostError
from roost.rpc._errors import abort_with
from roost.rpc._gen import common_pb2

log = logging.getLogger("roost.rpc")

DEFAULT_TIMEOUT_S = 10.0
"""Deadline of every client call unless the client is given another."""
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest message either end accepts (gRPC's default is 4 MiB; agent bundles can be more)."""

Context = grpc.aio.ServicerContext[Any, Any]
_S = TypeVar("_S", bound="ServicerBase")
_Req = TypeVar("_Req")
_Rep = TypeVar("_Rep")


class RpcService(Protocol):
    """Anything :class:`~roost.rpc.RpcServer` can serve: a servicer that knows its full
    gRPC service name (for health checks) and how to register itself."""

    @property
    def service_name(self) -> str:
        """The full gRPC service name, e.g. ``roost.v1.Registry``."""
        ...

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register the servicer's handlers with ``server``."""
        ...


@dataclass(frozen=True, slots=True)
class PingInfo:
    """What a coordination service answers to ``Ping``."""

    service: str
    """The role that answered (``registry``, ``state``, ...)."""
    node: str
    version: str
    """roost's version on the server."""
    server_time: float
    """The server's clock (unix seconds) when it answered."""


def service_label(service_name: str) -> str:
    """The role a full service name belongs to: ``roost.v1.Registry`` -> ``registry``."""
    return service_name.rsplit(".", 1)[-1].lower() or "grpc server"


def rpc_method(
    fn: Callable[[_S, _Req, Context], Awaitable[_Rep]],
) -> Callable[[_S, _Req, Context], Awaitable[_Rep]]:
    """The error boundary of one RPC handler: a :class:`RoostError` reaches the client as
    itself (status + roost code); anything else is a bug, logged here with its traceback
    and reported to the client as ``INTERNAL``."""

    @functools.wraps(fn)
    async def serve(self: _S, request: _Req, context: Context) -> _Rep:
        try:
            return await fn(self, request, context)
        except RoostError as exc:
            await abort_with(context, exc)
        except Exception as exc:
            method = f"{type(self).service_name}/{fn.__name__}"
            log.exception("%s failed", method)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"internal error in {type(self).role} ({fn.__name__}): {type(exc).__name__}: {exc}",
            )

    return serve


class ServicerBase:
    """Base of roost's servicers: the role and the ``Ping`` every service answers.

    Subclasses also inherit the generated ``*Servicer`` class (so an RPC they do not
    implement answers ``UNIMPLEMENTED``) and define ``add_to_server``."""

    role: ClassVar[str]
    """``registry``, ``state``, ``secret`` or ``catalog``."""
    service_name: ClassVar[str]
    """Full gRPC name, from the proto descriptor (``roost.v1.Registry``)."""

    def __init__(self, *, node: str | None = None) -> None:
        self.node = node or socket.gethostname()

    @rpc_method
    async def Ping(self, request: common_pb2.PingRequest, context: Context) -> common_pb2.PingReply:
        return common_pb2.PingReply(
            service=self.role, node=self.node, version=__version__, server_time=time.time()
        )
