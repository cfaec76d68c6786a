"""The client side: one channel per client, a deadline on every call, roost errors out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from roost.protocol import RoostError, ServiceUnavailableError
from roost.rpc._errors import error_from_rpc
from roost.rpc._gen import common_pb2
from roost.rpc._security import PLAINTEXT, RpcSecurity
from roost.rpc._service import DEFAULT_TIMEOUT_S, MAX_MESSAGE_BYTES, PingInfo, service_label

_Rep = TypeVar("_Rep", bound=Message)

# A restarted service must be reachable again within a second: after a failed connect a
# channel backs off before trying again (gRPC's default grows to 120 s), and meanwhile every
# call fails at once as unavailable. Calls are not retried for the caller: a call cut off
# mid-way may have run, and only the caller knows whether repeating it is safe.
_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def channel_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """The options of every roost channel (message limits matching the servers')."""
    return [
        *_CHANNEL_OPTIONS,
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def check_address(address: str) -> str:
    """``address`` if it looks like ``host:port``; a clear error otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return address


class RpcClient:
    """Base of the remote stores: calls ``service_name`` at ``address``, each with a
    deadline of ``timeout_s``.

    The channel opens on the first call (in the running event loop) and reconnects by
    itself after the server restarts. Failures raise :class:`~roost.protocol.RoostError`:
    the store's own error rebuilt exactly, or, when the service does not answer,
    :class:`~roost.protocol.ServiceTimeoutError` / :class:`ServiceUnavailableError` naming
    the service and its address. :meth:`close` releases the channel (a later call opens a
    new one).
    """

    service_name: ClassVar[str]
    """Full gRPC service name (``roost.v1.Registry``)."""
    error_types: ClassVar[Mapping[str, type[RoostError]]] = {}
    """Exception types for roost codes beyond the protocol's (``auth`` -> SecretKeyError)."""

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        security: RpcSecurity = PLAINTEXT,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, not {timeout_s}")
        self.address = check_address(address)
        self.timeout_s = timeout_s
        self.security = security
        self._metadata = security.metadata
        self._options = channel_options(max_message_bytes)
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}

    @property
    def target(self) -> str:
        """How errors name the peer: ``registry at 127.0.0.1:9090``."""
        return f"{service_label(self.service_name)} at {self.address}"

    def _open_channel(self) -> grpc.aio.Channel:
        """The channel, opened on first use (in the running event loop)."""
        if self._channel is None:
            self._channel = self.security.channel(self.address, self._options)
        return self._channel

    def _error(self, exc: grpc.RpcError, method: str, timeout_s: float) -> RoostError:
        return error_from_rpc(
            exc,
            target=self.target,
            method=f"{service_label(self.service_name).capitalize()}.{method}",
            timeout_s=timeout_s,
            types=self.error_types,
        )

    async def call(self, method: str, request: Message, reply_type: type[_Rep]) -> _Rep:
        """Call ``method`` (``GetAgent``) with a deadline; its reply, or a roost error."""
        multicallable = self._calls.get(method)
        if multicallable is None:
            multicallable = self._open_channel().unary_unary(
                f"/{self.service_name}/{method}",
                request_serializer=_serialize,
                response_deserializer=reply_type.FromString,
            )
            self._calls[method] = multicallable
        try:
            reply: _Rep = await multicallable(
                request, timeout=self.timeout_s, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._error(exc, method, self.timeout_s) from None
        return reply

    async def stream(
        self, method: str, request: Message, reply_type: type[_Rep], *, timeout_s: float
    ) -> AsyncGenerator[_Rep, None]:
        """Call server-streaming ``method``; its replies as they come, or a roost error.
        ``timeout_s`` bounds the whole stream (a run's lasts as long as the run)."""
        call = self._open_channel().unary_stream(
            f"/{self.service_name}/{method}",
            request_serializer=_serialize,
            response_deserializer=reply_type.FromString,
        )
        try:
            async for reply in call(request, timeout=timeout_s, metadata=self._metadata):
                yield reply
        except grpc.RpcError as exc:
            raise self._error(exc, method, timeout_s) from None

    async def ping(self) -> PingInfo:
        """Ask the service who it is (role, node, version, clock): a cheap liveness check."""
        reply = await self.call("Ping", common_pb2.PingRequest(), common_pb2.PingReply)
        return PingInfo(
            service=reply.service,
            node=reply.node,
            version=reply.version,
            server_time=reply.server_time,
        )

    async def close(self) -> None:
        """Close the channel (calls in flight fail). Idempotent."""
        channel, self._channel = self._channel, None
        self._calls.clear()
        if channel is not None:
            await channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


async def wait_healthy(
    address: str,
    service: str = "",
    timeout_s: float = 10.0,
    *,
    security: RpcSecurity = PLAINTEXT,
) -> None:
    """Wait until ``service`` (a full gRPC service name such as ``roost.v1.Registry``; ``""``
    for the server as a whole) reports ``SERVING`` on the standard health service at
    ``address``. Raises :class:`~roost.protocol.ServiceUnavailableError` saying what was
    last seen if it does not within ``timeout_s``."""
    check_address(address)
    label = f"{service_label(service) if service else 'gRPC server'} at {address}"
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    last = "no answer yet"
    async with security.channel(address, channel_options()) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=_serialize,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                # wait_for_ready: a server still starting is waited for, not an instant error
                reply = await check(
                    health_pb2.HealthCheckRequest(service=service),
                    timeout=min(remaining, 1.0),
                    wait_for_ready=True,
                )
            except grpc.RpcError as exc:
                last = _health_failure(exc, service)
            else:
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = f"status {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)
    raise ServiceUnavailableError(
        f"{label} is not healthy after {timeout_s:.1f} s (last: {last})",
        address=address,
        service=service,
    )


def _health_failure(exc: grpc.RpcError, service: str) -> str:
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
    if code == grpc.StatusCode.NOT_FOUND:
        return f"the server does not serve {service!r}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer (nothing listening, or the server is stuck)"
    details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
    return f"{code.name if code else 'error'}: {details}"
