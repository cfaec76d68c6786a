"""The embedded Temporal server of local mode: one per ROOST_HOME, shared by every roost
process of it, outliving the process that starts it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from roost._proc import pid_alive
from roost.workflows import (
    embedded_temporal_status,
    ensure_embedded_temporal,
    stop_embedded_temporal,
)
from temporal_helpers import greet

pytestmark = pytest.mark.temporal


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
from roost.workflows import embedded_temporal_status, ensure_embedded_temporal
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
from roost.workflows import embedded_temporal_status, ensure_embedded_temporal
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
