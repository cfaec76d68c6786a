"""gRPC for roost's coordination services: registry, state, secret and catalog.

In distributed mode only the coordination services open the database; every other worker
reaches them through clients that implement the same store Protocols as the SQL stores, so
they are drop-in replacements::

    async with RpcServer([RegistryServicer(stores.registry)], port=9090):   # the registry
        ...
    registry = RemoteRegistryStore("10.0.0.5:9090", timeout_s=5.0)          # anywhere
    await wait_healthy(registry.address, registry.service_name, timeout_s=30)
    record = await registry.get_agent("echo")
    await registry.close()

Errors cross the wire as themselves (a ``NotFoundError`` stays one, with its message); a
service that does not answer gives :class:`~roost.protocol.ServiceTimeoutError`, one that is
not there :class:`~roost.protocol.ServiceUnavailableError`, each naming service and address.
The protos live in ``proto/roost/v1``; ``scripts/gen-protos.sh`` regenerates ``_gen``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from roost.rpc._catalog import (
    AvailableModelLike,
    CatalogClient,
    CatalogServicer,
    ListAvailable,
)
from roost.rpc._client import RpcClient, wait_healthy
from roost.rpc._errors import (
    ERROR_CODE_KEY,
    ERROR_DETAILS_KEY,
    STATUS_BY_CODE,
    abort_with,
    error_from_rpc,
    status_for,
)
from roost.rpc._pki import LOCAL_HOSTS, write_cluster_credentials
from roost.rpc._registry import RegistryServicer, RemoteRegistryStore
from roost.rpc._secret import RemoteSecretStore, SecretServicer
from roost.rpc._security import (
    PLAINTEXT,
    RpcSecurity,
    bearer_token,
    credential_node,
    node_credential,
)
from roost.rpc._server import HEALTH_SERVICE, RpcServer
from roost.rpc._service import (
    DEFAULT_TIMEOUT_S,
    MAX_MESSAGE_BYTES,
    PingInfo,
    RpcService,
    ServicerBase,
    rpc_method,
)
from roost.rpc._state import RemoteStateStore, StateServicer
from roost.stores import AvailableModel, Stores

SERVICE_NAMES: dict[str, str] = {
    RegistryServicer.role: RegistryServicer.service_name,
    StateServicer.role: StateServicer.service_name,
    SecretServicer.role: SecretServicer.service_name,
    CatalogServicer.role: CatalogServicer.service_name,
}
"""Full gRPC service name of each role served here (``registry`` -> ``roost.v1.Registry``)."""


STORE_ROLES: tuple[str, ...] = ("registry", "state", "secret")
"""The coordination services that are a store served as it is."""


def store_servicers(
    stores: Stores, roles: Iterable[str], *, node: str | None = None
) -> list[RpcService]:
    """The servicers of store ``roles`` (``registry``, ``state``, ``secret``) over ``stores``."""
    factories: dict[str, Callable[[], RpcService]] = {
        "registry": lambda: RegistryServicer(stores.registry, node=node),
        "state": lambda: StateServicer(stores.state, node=node),
        "secret": lambda: SecretServicer(stores.secrets, node=node),
    }
    roles = list(roles)
    unknown = sorted(set(roles) - set(factories))
    if unknown:
        raise ValueError(f"not store services: {', '.join(unknown)}")
    return [factories[role]() for role in roles]


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ERROR_CODE_KEY",
    "ERROR_DETAILS_KEY",
    "HEALTH_SERVICE",
    "LOCAL_HOSTS",
    "MAX_MESSAGE_BYTES",
    "PLAINTEXT",
    "SERVICE_NAMES",
    "STATUS_BY_CODE",
    "STORE_ROLES",
    "AvailableModel",
    "AvailableModelLike",
    "CatalogClient",
    "CatalogServicer",
    "ListAvailable",
    "PingInfo",
    "RegistryServicer",
    "RemoteRegistryStore",
    "RemoteSecretStore",
    "RemoteStateStore",
    "RpcClient",
    "RpcSecurity",
    "RpcServer",
    "RpcService",
    "SecretServicer",
    "ServicerBase",
    "StateServicer",
    "abort_with",
    "bearer_token",
    "credential_node",
    "error_from_rpc",
    "node_credential",
    "rpc_method",
    "status_for",
    "store_servicers",
    "wait_healthy",
    "write_cluster_credentials",
]
