"""Shared fixtures: a real nats-server for the session and a bus over each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from roost.bus import Bus, MemoryBus
from roost.bus._nats import NatsBus
from roost.devservers import NatsServer


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A real nats-server (JetStream on) shared by the whole test session."""
    with NatsServer() as server:
        yield server


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A connected bus, once per backend, so one test runs against memory and NATS alike."""
    if request.param == "memory":
        backend: Bus = MemoryBus()
    else:
        server: NatsServer = request.getfixturevalue("nats_server")
        backend = NatsBus(server.url, client_name=f"test-{request.node.name}")
    async with backend:
        yield backend
