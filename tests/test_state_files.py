"""The two files processes share, as typed, versioned structs: the supervisor's status
snapshot (``roostd.json``) and the dev cluster's ``cluster.json``. Their readers return the
struct or say clearly what is wrong (unreadable, which field, which version); the CLI's
``--json`` keeps the keys it always printed. No processes, no servers."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from roost.daemon import paths
from roost.devcluster import (
    STATE_VERSION,
    ClusterState,
    ClusterStateError,
    DevCluster,
    DevClusterError,
    ProcessRef,
    WorkerRef,
    dev_cluster_status,
    read_cluster_state,
    stop_dev_cluster,
    write_cluster_state,
)
from roost.supervisor import (
    STATUS_VERSION,
    ExitInfo,
    SnapshotError,
    Supervisor,
    SupervisorConfig,
    SupervisorLock,
    SupervisorSnapshot,
    WorkerSnapshot,
    WorkerSpec,
    read_snapshot,
    read_status,
    write_snapshot,
)

# the keys the files (and `roost status --json`, `roost dev status --json`) always had
SNAPSHOT_KEYS = {
    "version", "name", "pid", "node", "state", "started_at", "updated_at", "phase", "phases",
    "heartbeat_s", "log_dir", "workers",
}  # fmt: skip
WORKER_KEYS = {
    "name", "role", "index", "phase", "pid", "state", "since", "started_at", "ready_at",
    "restarts", "last_exit", "details", "log",
}  # fmt: skip
EXIT_KEYS = {"code", "signal", "description", "reason", "at"}
CLUSTER_KEYS = {
    "version", "state", "pid", "home", "started_at", "updated_at", "addresses", "processes",
    "workers", "worker_pids", "client_config", "node_home", "logs", "worker_logs",
}  # fmt: skip
DEAD_PID = 2**30  # above any pid_max: never a running process


def worker(name: str = "kv-0", **changes: Any) -> WorkerSnapshot:
    role, _, index = name.rpartition("-")
    values: dict[str, Any] = {
        "name": name,
        "role": role,
        "index": int(index),
        "phase": 1,
        "pid": 4242,
        "state": "ready",
        "since": 1700000000.5,
        "started_at": 1700000000.0,
        "ready_at": 1700000000.25,
        "restarts": 1,
        "last_exit": ExitInfo(None, "SIGKILL", "killed by SIGKILL", 1699999999.0, "hung"),
        "details": {"port": 50051, "models": ["smollm2"]},
        "log": "/home/logs/kv-0.log",
    }
    return WorkerSnapshot(**(values | changes))


def snapshot(**changes: Any) -> SupervisorSnapshot:
    values: dict[str, Any] = {
        "name": "roostd",
        "pid": os.getpid(),
        "node": "node-1",
        "state": "running",
        "started_at": 1700000000.0,
        "updated_at": 1700000100.0,
        "phase": 2,
        "phases": 2,
        "heartbeat_s": 2.0,
        "log_dir": "/home/logs",
        "workers": [worker(), worker("agent-0", pid=None, state="backoff", last_exit=None)],
    }
    return SupervisorSnapshot(**(values | changes))


def cluster_state(**changes: Any) -> ClusterState:
    values: dict[str, Any] = {
        "state": "running",
        "pid": os.getpid(),
        "home": "/home",
        "started_at": 1700000000.0,
        "updated_at": 1700000100.0,
        "addresses": {"nats": "nats://127.0.0.1:4222", "harness": "127.0.0.1:50051"},
        "processes": {"nats": ProcessRef(DEAD_PID, 123), "roostd": ProcessRef(DEAD_PID, None)},
        "workers": {"kv": 1, "agent": 2},
        "worker_pids": [WorkerRef(name="kv-0", role="kv", index=0, pid=DEAD_PID, state="ready")],
        "client_config": None,
        "node_home": "/home/dev/node",
        "logs": "/home/dev/logs",
        "worker_logs": "/home/dev/node/logs",
    }
    return ClusterState(**(values | changes))


def rewrite(path: Path, **changes: Any) -> None:
    """Change top-level fields of a JSON file as another writer might have."""
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | changes))


# --- the supervisor's snapshot ----------------------------------------------------------------


def test_a_snapshot_round_trips_as_indented_json_with_the_keys_it_always_had(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run" / "roostd.json"
    written = snapshot()
    write_snapshot(path, written)
    assert read_snapshot(path) == written
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "workers": [\n' in text, "indented for people"
    data = json.loads(text)
    assert set(data) == SNAPSHOT_KEYS and data["version"] == STATUS_VERSION == 1
    assert set(data["workers"][0]) == WORKER_KEYS
    assert set(data["workers"][0]["last_exit"]) == EXIT_KEYS
    assert data["workers"][0]["details"] == {"port": 50051, "models": ["smollm2"]}
    assert data["workers"][1]["last_exit"] is None and data["workers"][1]["pid"] is None
    assert [p.name for p in path.parent.iterdir()] == ["roostd.json"], "no temporary left"


def test_the_supervisor_snapshots_itself_as_the_struct(tmp_path: Path) -> None:
    config = SupervisorConfig(log_dir=tmp_path / "logs", run_dir=tmp_path / "run", node="n1")
    specs = [[WorkerSpec("kv", 0, [sys.executable, "-c", "pass"])]]
    taken = Supervisor(specs, config).snapshot()  # never run: nothing starts
    assert taken.version == STATUS_VERSION and taken.pid == os.getpid()
    assert (taken.node, taken.state, taken.phases) == ("n1", "idle", 1)
    (only,) = taken.workers
    assert (only.name, only.state, only.pid, only.last_exit) == ("kv-0", "pending", None, None)
    assert only.log == str(tmp_path / "logs" / "kv-0.log")
    write_snapshot(config.status_path, taken)
    assert read_snapshot(config.status_path) == taken


def test_an_int_where_a_float_goes_is_read_as_written(tmp_path: Path) -> None:
    path = tmp_path / "roostd.json"
    write_snapshot(path, snapshot())
    rewrite(path, started_at=1700000000, heartbeat_s=2)  # what json.dumps of ints gives
    found = read_snapshot(path)
    assert found.started_at == 1700000000 and found.heartbeat_s == 2


@pytest.mark.parametrize(("version", "age"), [(2, "a newer"), (0, "an older")])
def test_a_snapshot_of_another_version_says_which_and_what_to_do(
    tmp_path: Path, version: int, age: str
) -> None:
    path = tmp_path / "roostd.json"
    # another version may have any shape: the version is what is reported
    path.write_text(json.dumps({"version": version, "workers": "elsewhere"}))
    with pytest.raises(SnapshotError) as caught:
        read_snapshot(path)
    message = str(caught.value)
    assert f"{path} has status snapshot version {version} (written by {age} roostd)" in message
    assert f"this roost reads version {STATUS_VERSION}" in message
    assert "use the roost that runs that roostd" in message
    assert caught.value.version == version and caught.value.path == path


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"pid": "1234"}, "Expected `int`, got `str` - at `$.pid`"),
        (
            {"workers": [{"name": "kv-0"}]},
            "Object missing required field `role` - at `$.workers[0]`",
        ),
        ({"state": "sleeping"}, "Invalid enum value 'sleeping' - at `$.state`"),
        ({"version": "1"}, "Expected `int`, got `str` - at `$.version`"),
    ],
)
def test_a_malformed_snapshot_names_the_field(
    tmp_path: Path, change: dict[str, Any], where: str
) -> None:
    path = tmp_path / "roostd.json"
    write_snapshot(path, snapshot())
    rewrite(path, **change)
    with pytest.raises(SnapshotError) as caught:
        read_snapshot(path)
    assert str(caught.value) == f"{path} is not a status snapshot: {where}"
    assert caught.value.version is None


def test_a_snapshot_without_a_version_or_not_an_object_is_not_a_snapshot(
    tmp_path: Path,
) -> None:
    path = tmp_path / "roostd.json"
    path.write_text('{"pid": 1}')
    with pytest.raises(SnapshotError, match="missing required field `version`"):
        read_snapshot(path)
    path.write_text("[1, 2]")
    with pytest.raises(SnapshotError, match="is not a status snapshot: Expected `object`"):
        read_snapshot(path)


def test_a_truncated_snapshot_is_unreadable_and_an_absent_one_is_none(tmp_path: Path) -> None:
    path = tmp_path / "roostd.json"
    write_snapshot(path, snapshot())
    path.write_text(path.read_text()[:100])
    with pytest.raises(SnapshotError, match=rf"^unreadable status snapshot {path}: .*truncated"):
        read_snapshot(path)
    with pytest.raises(FileNotFoundError):
        read_snapshot(tmp_path / "absent.json")


def test_read_status_gives_the_typed_snapshot_or_the_readers_reason(tmp_path: Path) -> None:
    home = tmp_path / "node"
    status, lock_path = paths.status_path(home), paths.lock_path(home)
    assert read_status(status, lock_path).reason == f"no status in {status}"

    write_snapshot(status, snapshot())
    lock = SupervisorLock(lock_path)
    lock.acquire()
    try:
        found = read_status(status, lock_path)
        assert found.running and found.reason == "" and found.snapshot == snapshot()
        # a roostd of another version runs (it holds the lock): said so, with the reason
        rewrite(status, version=STATUS_VERSION + 1)
        other = read_status(status, lock_path)
        assert other.running and other.snapshot is None
        assert f"status snapshot version {STATUS_VERSION + 1}" in other.reason
    finally:
        lock.release()
    assert not read_status(status, lock_path).running
    write_snapshot(status, snapshot())
    gone = read_status(status, lock_path)
    assert not gone.running and gone.snapshot == snapshot() and "is gone" in gone.reason


# --- the dev cluster's state --------------------------------------------------------------------


def test_a_cluster_state_round_trips_as_indented_json_with_the_keys_it_always_had(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dev" / "cluster.json"
    written = cluster_state()
    write_cluster_state(path, written)
    assert read_cluster_state(path) == written
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "processes": {\n' in text
    data = json.loads(text)
    assert set(data) == CLUSTER_KEYS and data["version"] == STATE_VERSION == 1
    assert data["processes"]["nats"] == {"pid": DEAD_PID, "start": 123}
    assert data["worker_pids"] == [
        {"name": "kv-0", "role": "kv", "index": 0, "pid": DEAD_PID, "state": "ready"}
    ]


def test_a_dev_cluster_records_its_state_as_the_struct(tmp_path: Path) -> None:
    cluster = DevCluster(tmp_path, workers={"agent": 1})
    cluster._record()  # what start() writes first, before anything runs
    state = read_cluster_state(cluster.paths.state)
    assert (state.state, state.pid, state.home) == ("idle", os.getpid(), str(tmp_path))
    assert state.processes == {} and state.worker_pids == [] and state.client_config is None
    assert state.workers["agent"] == 1 and state.node_home == str(cluster.paths.node_home)
    assert set(json.loads(cluster.paths.state.read_text())) == CLUSTER_KEYS


@pytest.mark.parametrize(("version", "age"), [(2, "a newer"), (0, "an older")])
def test_a_cluster_state_of_another_version_says_which_and_what_to_do(
    tmp_path: Path, version: int, age: str
) -> None:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"version": version, "processes": ["unknown", "shape"]}))
    with pytest.raises(ClusterStateError) as caught:
        read_cluster_state(path)
    message = str(caught.value)
    assert f"{path} has dev cluster state version {version} (written by {age} roost)" in message
    assert f"this roost reads version {STATE_VERSION}" in message
    assert "stop that cluster with the roost version that started it (`roost dev down`)" in (
        message
    )
    assert caught.value.version == version


@pytest.mark.parametrize(
    ("change", "where"),
    [
        # msgspec names the field within a dict's value, not the key: [...]
        ({"processes": {"nats": {"pid": "x", "start": 1}}}, "at `$.processes[...].pid`"),
        ({"addresses": {"nats": 4222}}, "Expected `str`, got `int` - at `$.addresses[...]`"),
        ({"worker_pids": [{"name": "kv-0"}]}, "missing required field `role`"),
        ({"state": "paused"}, "Invalid enum value 'paused' - at `$.state`"),
    ],
)
def test_a_malformed_cluster_state_names_the_field(
    tmp_path: Path, change: dict[str, Any], where: str
) -> None:
    path = tmp_path / "cluster.json"
    write_cluster_state(path, cluster_state())
    rewrite(path, **change)
    with pytest.raises(ClusterStateError) as caught:
        read_cluster_state(path)
    assert str(caught.value).startswith(f"{path} is not a dev cluster state: ")
    assert where in str(caught.value) and caught.value.version is None


def test_a_truncated_cluster_state_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cluster.json"
    write_cluster_state(path, cluster_state())
    path.write_text(path.read_text()[:-10])
    with pytest.raises(ClusterStateError, match=rf"^unreadable dev cluster state {path}: "):
        read_cluster_state(path)


def test_dev_cluster_status_reads_the_struct_and_reports_a_file_it_cannot_read(
    tmp_path: Path,
) -> None:
    state_path = tmp_path / "dev" / "cluster.json"
    found = dev_cluster_status(tmp_path)
    assert found.state is None and found.reason == f"no dev cluster has run for {tmp_path}"

    write_cluster_state(state_path, cluster_state(state="stopped", processes={}))
    found = dev_cluster_status(tmp_path)
    assert not found.running and found.reason == "stopped" and found.problem == ""
    assert found.state == cluster_state(state="stopped", processes={})

    rewrite(state_path, version=STATE_VERSION + 1)
    found = dev_cluster_status(tmp_path)
    assert not found.running and found.state is None
    assert found.reason == found.problem and "`roost dev down`" in found.problem

    lock = SupervisorLock(tmp_path / "dev" / "cluster.lock")
    lock.acquire()
    try:
        held = dev_cluster_status(tmp_path)
        assert held.running and held.pid == os.getpid() and held.state is None
        assert held.reason == "" and f"version {STATE_VERSION + 1}" in held.problem
    finally:
        lock.release()


def test_dev_down_marks_a_killed_clusters_state_stopped_and_refuses_another_version(
    tmp_path: Path,
) -> None:
    state_path = tmp_path / "dev" / "cluster.json"
    write_cluster_state(state_path, cluster_state())  # its processes are long gone
    assert stop_dev_cluster(tmp_path) == ""
    after = read_cluster_state(state_path)
    assert (after.state, after.processes, after.worker_pids) == ("stopped", {}, [])
    assert after.addresses == cluster_state().addresses, "kept for the next start's ports"

    rewrite(state_path, version=STATE_VERSION + 1, state="running")
    before = state_path.read_text()
    with pytest.raises(DevClusterError, match=f"dev cluster state version {STATE_VERSION + 1}"):
        stop_dev_cluster(tmp_path)
    assert state_path.read_text() == before, "another roost's file is left as it is"

    state_path.write_text(before[:20])  # mangled: as if no cluster had run, as before
    assert stop_dev_cluster(tmp_path) == ""


def test_dev_up_refuses_another_versions_state_before_it_starts_anything(
    tmp_path: Path,
) -> None:
    state_path = tmp_path / "dev" / "cluster.json"
    write_cluster_state(state_path, cluster_state())
    rewrite(state_path, version=STATE_VERSION + 1)
    before = state_path.read_text()
    cluster = DevCluster(tmp_path)
    with pytest.raises(DevClusterError, match="`roost dev down`"):
        cluster.start()
    assert cluster.state == "idle" and cluster.nats is None
    assert state_path.read_text() == before
    # the lock was released: a status sees no cluster running
    assert not dev_cluster_status(tmp_path).running


# --- the CLI's --json ------------------------------------------------------------------------


def roost(home: Path, *args: str) -> Any:
    from roost.cli.app import app

    env = {
        "ROOST_HOME": str(home),
        "NO_COLOR": "1",
        "ROOST_CONFIG": None,
        "ROOST_CLIENT_CONFIG": None,
    }
    return CliRunner().invoke(app, list(args), env=env)


def test_roost_status_json_prints_the_snapshots_keys(tmp_path: Path) -> None:
    home = tmp_path / "node"
    write_snapshot(paths.status_path(home), snapshot(updated_at=time.time()))
    lock = SupervisorLock(paths.lock_path(home))
    lock.acquire()
    try:
        shown = roost(home, "status", "--json")
    finally:
        lock.release()
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert set(data) == {"running"} | SNAPSHOT_KEYS and data["running"] is True
    assert [set(w) for w in data["workers"]] == [WORKER_KEYS, WORKER_KEYS]
    assert data["workers"][0]["last_exit"]["reason"] == "hung"

    gone = roost(home, "status", "--json")
    assert gone.exit_code == 1 and json.loads(gone.output)["running"] is False


def test_roost_dev_status_json_prints_the_files_keys(tmp_path: Path) -> None:
    node = tmp_path / "dev" / "node"
    write_cluster_state(tmp_path / "dev" / "cluster.json", cluster_state(node_home=str(node)))
    write_snapshot(paths.status_path(node), snapshot())
    locks = [
        SupervisorLock(tmp_path / "dev" / "cluster.lock"),
        SupervisorLock(paths.lock_path(node)),
    ]
    for lock in locks:
        lock.acquire()
    try:
        shown = roost(tmp_path, "dev", "status", "--json")
        human = roost(tmp_path, "dev", "status")
    finally:
        for lock in locks:
            lock.release()
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert set(data) == {"running", "pid", "reason", "leftovers", "cluster", "workers"}
    assert data["running"] is True and data["pid"] == os.getpid()
    assert set(data["cluster"]) == CLUSTER_KEYS
    assert data["cluster"]["processes"]["nats"] == {"pid": DEAD_PID, "start": 123}
    assert [set(w) for w in data["workers"]] == [WORKER_KEYS, WORKER_KEYS]
    assert human.exit_code == 0, human.output
    assert f"dev cluster running for {tmp_path}" in human.output
    assert "1/2 workers ready" in human.output and "harness" in human.output

    stopped = roost(tmp_path, "dev", "status", "--json")
    assert stopped.exit_code == 1
    assert json.loads(stopped.output)["cluster"]["state"] == "running"
