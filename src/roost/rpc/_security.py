"""How roost's processes trust each other over gRPC: :class:`RpcSecurity`.

Two independent layers, both configured in ``[distributed.security]``:

- **TLS.** With a CA, every channel is TLS and verifies its server's certificate against
  the deployment's CA (not the system's): secrets and KV never travel in clear. With
  ``mtls`` the servers also require a client certificate the CA signed.
- **Node credentials.** Each node has its own credential, ``roost-node:<node>:<hmac>``,
  the HMAC-SHA256 of its name under the cluster key. Every call carries it (as
  ``authorization`` metadata); a server holding the cluster key checks it in constant
  time, with no lookup, and refuses a call without a valid one as ``UNAUTHENTICATED``.
  Naming the node lets a server log who called, and refuse one node (``revoked_nodes``)
  without re-keying the others. The health service stays open: probes learn only
  whether a service is serving.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from roost.config import ConfigError, RpcSecurityConfig

log = logging.getLogger("roost.rpc")

CREDENTIAL_PREFIX = "roost-node"
_METADATA_KEY = "authorization"
_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


def bearer_token(metadata: Any) -> str:
    """The token of a call's first ``authorization: Bearer <token>`` metadata ("" if none,
    or another scheme)."""
    for key, value in metadata or ():
        if key == _METADATA_KEY and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def node_credential(cluster_key: bytes, node: str) -> str:
    """The credential of ``node`` under ``cluster_key``."""
    if not node or ":" in node:
        raise ValueError(f"a node name is non-empty and has no ':': {node!r}")
    return f"{CREDENTIAL_PREFIX}:{node}:{_signature(cluster_key, node)}"


def credential_node(cluster_key: bytes, credential: str) -> str | None:
    """The node ``credential`` is valid for under ``cluster_key``, or ``None``."""
    prefix, _, rest = credential.partition(":")
    node, _, signature = rest.rpartition(":")
    if prefix != CREDENTIAL_PREFIX or not node:
        return None
    if not hmac.compare_digest(signature.encode(), _signature(cluster_key, node).encode()):
        return None
    return node


def _signature(cluster_key: bytes, node: str) -> str:
    return hmac.new(cluster_key, f"{CREDENTIAL_PREFIX}:{node}".encode(), hashlib.sha256).hexdigest()


def _read(path: Path | None, key: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"[distributed.security] {key}: cannot read {path}: {exc}") from None


@dataclass(frozen=True)
class RpcSecurity:
    """The TLS material and credentials one process uses, as a server and as a client.
    ``RpcSecurity()`` is none at all: plaintext, no credential (loopback-only setups)."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)
    mtls: bool = False
    credential: str | None = field(default=None, repr=False)
    cluster_key: bytes | None = field(default=None, repr=False)
    revoked: frozenset[str] = frozenset()

    @classmethod
    def load(cls, config: RpcSecurityConfig) -> RpcSecurity:
        """Read the files ``config`` names; a missing or unreadable one is a
        :class:`~roost.config.ConfigError` naming its key."""
        cert, key = _read(config.cert_file, "cert_file"), _read(config.key_file, "key_file")
        if (cert is None) != (key is None):
            raise ConfigError("[distributed.security] cert_file and key_file go together")
        ca = _read(config.ca_file, "ca_file")
        if config.mtls and (ca is None or cert is None):
            raise ConfigError("[distributed.security] mtls needs ca_file, cert_file and key_file")
        if cert is not None and ca is None:
            raise ConfigError(
                "[distributed.security] cert_file needs ca_file: clients verify the servers "
                "against the deployment's CA"
            )
        raw = _read(config.credential_file, "credential_file")
        credential = raw.decode().strip() if raw is not None else None
        cluster_key = _read(config.cluster_key_file, "cluster_key_file")
        if cluster_key is not None:
            cluster_key = cluster_key.strip()
            if len(cluster_key) < 32:
                raise ConfigError("[distributed.security] cluster_key_file: at least 32 bytes")
        return cls(
            ca=ca, cert=cert, key=key, mtls=config.mtls, credential=credential,
            cluster_key=cluster_key, revoked=frozenset(config.revoked_nodes),
        )  # fmt: skip

    @property
    def tls(self) -> bool:
        return self.ca is not None

    # --- the server side ----------------------------------------------------------------

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """TLS for a server (``None``: plaintext)."""
        if self.cert is None or self.key is None:
            return None
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.ca if self.mtls else None,
            require_client_auth=self.mtls,
        )

    def interceptors(self) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
        """The server interceptors that check node credentials (none without a key)."""
        return [] if self.cluster_key is None else [_CheckNodeCredential(self)]

    def caller(self, metadata: Any) -> str | None:
        """The node a call's ``metadata`` authenticates, or ``None``."""
        assert self.cluster_key is not None
        credential = bearer_token(metadata)
        if not credential:
            return None
        node = credential_node(self.cluster_key, credential)
        return None if node in self.revoked else node

    # --- the client side ----------------------------------------------------------------

    def channel(self, address: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
        """A channel to ``address``: TLS verified against the CA, or plaintext."""
        if self.ca is None:
            return grpc.aio.insecure_channel(address, options=options)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca,
            private_key=self.key if self.mtls else None,
            certificate_chain=self.cert if self.mtls else None,
        )
        return grpc.aio.secure_channel(address, credentials, options=options)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        """What every call sends: this node's credential, if it has one."""
        if self.credential is None:
            return None
        return ((_METADATA_KEY, f"Bearer {self.credential}"),)


#: No TLS, no credential: what a process without ``[distributed.security]`` uses.
PLAINTEXT = RpcSecurity()


class _CheckNodeCredential(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses every call (but health checks) without a valid node credential."""

    def __init__(self, security: RpcSecurity) -> None:
        self.security = security
        self._refused = 0

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        if self.security.caller(metadata) is not None:
            return handler
        self._refused += 1
        if self._refused <= 10 or self._refused % 1000 == 0:  # a flood does not fill the log
            log.warning("refused %s: no valid node credential (%d so far)", method, self._refused)
        return _refusal(handler)


async def _deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "no valid node credential: set [distributed.security] credential_file",
    )


async def _deny_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await _deny(request, context)
    yield  # pragma: no cover  # an async generator, as a streaming handler must be


def _refusal(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of ``handler``'s kind that answers ``UNAUTHENTICATED``."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_deny_stream, **kwargs)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(_deny_stream, **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(_deny, **kwargs)


__all__ = ["PLAINTEXT", "RpcSecurity", "credential_node", "node_credential"]
