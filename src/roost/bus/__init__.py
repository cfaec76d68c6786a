"""Message bus with two backends behind one interface: ``memory`` and ``nats``."""

from __future__ import annotations

from roost.bus._base import (
    Bus,
    ConsumerOptions,
    Delivery,
    DurableDelivery,
    DurableHandler,
    Handler,
    Reject,
    Stream,
    Subscription,
    subject_matches,
)
from roost.bus._memory import MemoryBus
from roost.bus._permissions import (
    BUS_USERS,
    BusPermissions,
    inbox_prefix,
    nats_authorization,
    role_permissions,
)


def create_bus(
    backend: str,
    url: str = "",
    *,
    client_name: str = "roost",
    connect_timeout: float = 2.0,
    user: str = "",
    password: str = "",
) -> Bus:
    """Build a bus by backend name (``memory`` or ``nats``); connect it before use.

    ``client_name``, ``connect_timeout`` (seconds to the first connection) and the NATS
    ``user`` and ``password`` apply to NATS. A user's replies arrive on its own inbox
    prefix, which its permissions let only it read (:mod:`roost.bus._permissions`).
    """
    if backend == "memory":
        return MemoryBus()
    if backend == "nats":
        from roost.bus._nats import NatsBus

        credentials: dict[str, str] = (
            {"user": user, "password": password, "inbox_prefix": inbox_prefix(user)} if user else {}
        )
        return NatsBus(
            url or "nats://127.0.0.1:4222",
            client_name=client_name,
            connect_timeout=connect_timeout,
            **credentials,
        )
    raise ValueError(f"unknown bus backend {backend!r} (expected 'memory' or 'nats')")


__all__ = [
    "BUS_USERS",
    "Bus",
    "BusPermissions",
    "ConsumerOptions",
    "Delivery",
    "DurableDelivery",
    "DurableHandler",
    "Handler",
    "MemoryBus",
    "Reject",
    "Stream",
    "Subscription",
    "create_bus",
    "inbox_prefix",
    "nats_authorization",
    "role_permissions",
    "subject_matches",
]
