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


def create_bus(
    backend: str,
    url: str = "",
    *,
    client_name: str = "roost",
    connect_timeout: float = 2.0,
) -> Bus:
    """Build a bus by backend name (``memory`` or ``nats``); connect it before use.

    ``client_name`` and ``connect_timeout`` (seconds to the first connection) apply to NATS.
    """
    if backend == "memory":
        return MemoryBus()
    if backend == "nats":
        from roost.bus._nats import NatsBus

        return NatsBus(
            url or "nats://127.0.0.1:4222",
            client_name=client_name,
            connect_timeout=connect_timeout,
        )
    raise ValueError(f"unknown bus backend {backend!r} (expected 'memory' or 'nats')")


__all__ = [
    "Bus",
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
    "subject_matches",
]
