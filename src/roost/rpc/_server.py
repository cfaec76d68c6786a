"""A grpc.aio server for roost's coordination services, with the standard health service."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # not in the stubs

from roost.protocol import ServiceUnavailableError
from roost.rpc._security import PLAINTEXT, RpcSecurity
from roost.rpc._service import MAX_MESSAGE_BYTES, RpcService

log = logging.getLogger("roost.rpc")

HEALTH_SERVICE = "grpc.health.v1.Health"


def join_host_port(host: str, port: int) -> str:
    """``host:port``, bracketing IPv6 literals (``[::1]:9090``)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class RpcServer:
    """Serves coordination services on ``host:port`` until stopped::

        async with RpcServer([RegistryServicer(store)], host="0.0.0.0", port=9090) as server:
            await server.wait_for_termination()

    ``SO_REUSEPORT`` is on by default, so the worker processes of one role on a node can
    all listen on the role's port (the kernel spreads connections over them); a port held
    by a program that did not set it is reported as taken. Every served service, and the
    server as a whole (``""``), reports ``SERVING`` on the standard ``grpc.health.v1``
    health service until :meth:`stop`. ``port=0`` picks a free port (see :attr:`port`).
    ``security`` makes it TLS (or mTLS) and checks node credentials on every call.
    """

    def __init__(
        self,
        services: Iterable[RpcService],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reuse_port: bool = True,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        security: RpcSecurity = PLAINTEXT,
    ) -> None:
        self.services = list(services)
        if not self.services:
            raise ValueError("an RpcServer needs at least one service to serve")
        names = [s.service_name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"a service is given twice: {', '.join(sorted(names))}")
        if not 0 <= port < 65536:
            raise ValueError(f"port {port} is not 0..65535")
        self.host = host
        self._port = port
        self.security = security
        self._options = [
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._server: grpc.aio.Server | None = None
        self._health: health_aio.HealthServicer | None = None

    @property
    def port(self) -> int:
        """The port served (the one picked, after :meth:`start` with ``port=0``)."""
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` served (with ``0.0.0.0`` as given, not a reachable address)."""
        return join_host_port(self.host, self._port)

    @property
    def service_names(self) -> list[str]:
        return [s.service_name for s in self.services]

    async def start(self) -> None:
        """Bind and start serving. A port that cannot be bound (taken by another program,
        or a host that is not local) raises :class:`ServiceUnavailableError` naming it."""
        if self._server is not None:
            return
        server = grpc.aio.server(options=self._options, interceptors=self.security.interceptors())
        for service in self.services:
            service.add_to_server(server)
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        for name in self.service_names:
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        target = self.address
        tls = self.security.server_credentials()
        try:
            bound = (
                server.add_secure_port(target, tls)
                if tls is not None
                else server.add_insecure_port(target)
            )
        except RuntimeError as exc:  # grpcio raises here (older versions returned 0)
            await server.stop(None)
            raise self._bind_error(target, exc) from None
        if not bound:
            await server.stop(None)
            raise self._bind_error(target, None)
        self._port = bound
        await server.start()
        self._server, self._health = server, health
        log.info(
            "serving %s on %s (%s%s)",
            ", ".join(self.service_names),
            self.address,
            ("mTLS" if self.security.mtls else "TLS") if tls is not None else "plaintext",
            ", node credentials checked" if self.security.cluster_key is not None else "",
        )

    def _bind_error(self, target: str, exc: Exception | None) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"cannot serve {', '.join(self.service_names)} on {target}: the port is taken by "
            "another program (or the host is not an address of this machine)"
            + (f" ({exc})" if exc else ""),
            address=target,
        )

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop serving: health turns ``NOT_SERVING`` at once, new calls are refused, calls
        in flight get ``grace`` seconds to finish (``None``: cancel them now). Idempotent."""
        server, health = self._server, self._health
        self._server = self._health = None
        if server is None:
            return
        if health is not None:
            await health.enter_graceful_shutdown()
        await server.stop(grace)
        log.info("stopped serving %s on %s", ", ".join(self.service_names), self.address)

    async def wait_for_termination(self, timeout_s: float | None = None) -> bool:
        """Wait until the server stops (``timeout_s``: at most that long); ``True`` if it
        stopped."""
        if self._server is None:
            return True
        return await self._server.wait_for_termination(timeout_s)

    async def __aenter__(self) -> RpcServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
