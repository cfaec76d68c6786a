"""The supervisor with real worker processes (tests/supervisor_helper.py, built on
WorkerLink): phases, readiness, restarts with backoff, hung workers, clean and unclean
shutdowns, the lock and the status file; then ``roostd start`` and ``roost status`` as a
user runs them, on a real NATS."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import alive, cli_env, run_cli
from cli_helpers import wait_until as wait_until_polled
from roost._proc import free_port
from roost.config import GRPC_PORTS
from roost.devservers import NatsServer
from roost.supervisor import (
    StartupError,
    Supervisor,
    SupervisorConfig,
    SupervisorLock,
    SupervisorSnapshot,
    WorkerLink,
    WorkerSnapshot,
    WorkerSpec,
)

pytestmark = pytest.mark.processes  # real roostd and worker processes

ROOT = Path(__file__).resolve().parent.parent
HELPER = Path(__file__).resolve().parent / "supervisor_helper.py"


# --- helpers --------------------------------------------------------------------------------


async def wait_until(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.05)


def wait_until_sync(check: Callable[[], Any], timeout: float, what: str) -> None:
    wait_until_polled(check, timeout, what, every=0.05)


def worker_in(snapshot: SupervisorSnapshot, name: str) -> WorkerSnapshot:
    return next(w for w in snapshot.workers if w.name == name)


def file_worker(status: dict[str, Any], name: str) -> dict[str, Any]:
    """A worker as the status file or ``roost status --json`` has it (plain JSON: the keys
    other processes see)."""
    return next(w for w in status["workers"] if w["name"] == name)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(cli_env(home), *args, timeout=60)


class Rig:
    """One test's supervisor set-up: its home, the helper's event file, worker specs."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.events_path = tmp_path / "events.jsonl"

    def spec(self, role: str, index: int = 0, *options: str) -> WorkerSpec:
        argv = [sys.executable, str(HELPER), "worker", "--events", str(self.events_path)]
        return WorkerSpec(role, index, [*argv, *options], {"HELPER_NAME": f"{role}-{index}"})

    def once(self, name: str) -> str:
        return str(self.tmp / f"once-{name}")

    def config_values(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "log_dir": self.home / "logs",
            "run_dir": self.home / "run",
            "heartbeat_s": 0.2,
            "start_timeout_s": 10.0,
            "restart_backoff_s": 0.2,
            "restart_backoff_max_s": 0.8,
            "stop_timeout_s": 3.0,
            "status_interval_s": 0.2,
        }
        values.update(overrides)
        return values

    def config(self, **overrides: Any) -> SupervisorConfig:
        return SupervisorConfig(**self.config_values(**overrides))

    @property
    def status_path(self) -> Path:
        return self.home / "run" / "roostd.json"

    def status(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.status_path.read_text())
        except FileNotFoundError:
            return None
        return data

    def events(self, name: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        found = [json.loads(line) for line in self.events_path.read_text().splitlines() if line]
        return [
            e
            for e in found
            if (name is None or e["name"] == name) and (event is None or e["event"] == event)
        ]

    def started_pids(self) -> list[int]:
        return [e["pid"] for e in self.events(event="start")]

    # a supervisor in its own process, as a test can signal and kill it
    def spawn(self, phases: list[list[WorkerSpec]], **config: Any) -> subprocess.Popen[str]:
        values = {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}
        spec = {
            "phases": [
                [
                    {"role": s.role, "index": s.index, "argv": list(s.argv), "env": dict(s.env)}
                    for s in phase
                ]
                for phase in phases
            ],
            "config": values,
        }
        self.spec_file = self.tmp / "spec.json"
        self.spec_file.write_text(json.dumps(spec))
        self.supervisor_log = self.tmp / "supervisor.log"
        with self.supervisor_log.open("w") as log:
            return subprocess.Popen(
                [sys.executable, str(HELPER), "supervise", str(self.spec_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def _running(rig: Rig) -> bool:
    status = rig.status()
    return status is not None and status["state"] == "running"


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[str]]]:
    """Supervisor processes a test starts: killed if the test leaves one behind."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- in-process supervisor --------------------------------------------------------------------


async def test_phases_start_in_order_each_after_the_last_is_ready(rig: Rig) -> None:
    supervisor = Supervisor(
        [[rig.spec("a", 0, "--ready-after", "0.8")], [rig.spec("b", 0), rig.spec("b", 1)]],
        rig.config(),
    )
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    try:
        # while a-0 gets ready, the status shows phase 2 waiting
        await wait_until(
            lambda: (
                (s := rig.status()) is not None and file_worker(s, "a-0")["state"] == "starting"
            ),
            10,
            "a-0 starting",
        )
        early = rig.status()
        assert early is not None and early["state"] == "starting" and early["phase"] == 1
        assert file_worker(early, "b-0")["state"] == "pending" and not rig.events("b-0")
        await wait_until(lambda: _running(rig), 15, "every worker ready")
        a_ready = rig.events("a-0", "ready")[0]["t"]
        for name in ("b-0", "b-1"):
            assert rig.events(name, "start")[0]["t"] > a_ready
        status = rig.status()
        assert status is not None
        assert status["pid"] == os.getpid() and status["node"] and status["phases"] == 2
        pids = {e["name"]: e["pid"] for e in rig.events(event="start")}
        for worker in status["workers"]:
            assert worker["state"] == "ready"
            assert worker["pid"] == pids[worker["name"]]
            assert worker["restarts"] == 0 and worker["last_exit"] is None
            assert worker["details"] == {"answer": 42}
            assert Path(worker["log"]) == rig.home / "logs" / f"{worker['name']}.log"
        # rewritten every status interval even when nothing changes
        before = status["updated_at"]
        await asyncio.sleep(0.5)
        later = rig.status()
        assert later is not None and later["updated_at"] > before
    finally:
        supervisor.request_stop()
        await asyncio.wait_for(task, 20)
    assert not any(alive(pid) for pid in rig.started_pids())
    stopped = {e["name"]: e["t"] for e in rig.events(event="stop")}
    assert max(stopped["b-0"], stopped["b-1"]) < stopped["a-0"], "reverse phase order"
    assert rig.status() is None, "the status file goes with the supervisor"
    log = (rig.home / "logs" / "a-0.log").read_text()
    assert "a-0 (restart 0)" in log and str(HELPER) in log


async def test_crashed_workers_restart_with_backoff_and_are_counted(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "roost.supervisor")
    supervisor = Supervisor(
        [
            # steady is SIGKILLed by the test; slowcrash stays up longer than stable_after_s
            [rig.spec("steady"), rig.spec("slowcrash", 0, "--exit-after", "1.0", "--code", "7")],
            [rig.spec("crashy", 0, "--exit-after", "0.05", "--code", "3")],
        ],
        rig.config(restart_backoff_s=0.2, restart_backoff_max_s=0.8, stable_after_s=0.5),
    )
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    try:
        await wait_until(lambda: supervisor.state == "running", 15, "all ready")
        steady = worker_in(supervisor.snapshot(), "steady-0").pid
        os.kill(steady, signal.SIGKILL)
        await wait_until(
            lambda: (
                worker_in(supervisor.snapshot(), "crashy-0").restarts >= 3
                and worker_in(supervisor.snapshot(), "slowcrash-0").restarts >= 2
            ),
            20,
            "restarts",
        )
        await wait_until(
            lambda: worker_in(supervisor.snapshot(), "steady-0").state == "ready", 10, "steady"
        )
        snapshot = supervisor.snapshot()
    finally:
        supervisor.request_stop()
        await asyncio.wait_for(task, 20)

    again = worker_in(snapshot, "steady-0")
    assert again.restarts == 1 and again.pid != steady and not alive(steady)
    assert again.last_exit.signal == "SIGKILL" and again.last_exit.code is None
    assert f"steady-0 (pid {steady}) killed by SIGKILL" in caplog.text

    crashy = worker_in(snapshot, "crashy-0")
    assert crashy.last_exit.code == 3 and crashy.last_exit.description == "exit code 3"

    def delays(name: str) -> list[float]:
        return [
            float(m.group(1))
            for r in caplog.records
            if (m := re.fullmatch(rf"{name}: restart \d+ in ([\d.]+)s", r.getMessage()))
        ]

    # doubling per crash in a row, capped at restart_backoff_max_s
    assert delays("crashy-0")[:4] == [0.2, 0.4, 0.8, 0.8][: len(delays("crashy-0")[:4])]
    assert len(delays("crashy-0")) >= 3
    # ... and reset after a worker stayed ready for stable_after_s
    assert delays("slowcrash-0")[:2] == [0.2, 0.2]
    # a restart really waits: from a crash to the next start takes at least the delay
    exits = rig.events("crashy-0", "exit")
    starts = rig.events("crashy-0", "start")
    assert starts[2]["t"] - exits[1]["t"] >= 0.4


async def test_a_worker_that_never_becomes_ready_fails_its_start(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "roost.supervisor")
    supervisor = Supervisor(
        [[rig.spec("slow", 0, "--never-ready")], [rig.spec("later")]],
        rig.config(start_timeout_s=1.0, start_retries=1, restart_backoff_s=0.1),
    )
    started = time.monotonic()
    with pytest.raises(StartupError) as failure:
        await asyncio.wait_for(supervisor.run(handle_signals=False), 15)
    took = time.monotonic() - started
    assert 2.0 <= took < 8.0, took  # two attempts of start_timeout_s each
    assert failure.value.worker == "slow-0"
    assert "not ready within 1s" in str(failure.value) and "slow-0.log" in str(failure.value)
    assert len(rig.events("slow-0", "start")) == 2
    assert not rig.events("later-0"), "the next phase never starts"
    assert not any(alive(pid) for pid in rig.started_pids())
    assert "slow-0 (pid" in caplog.text and "did not become ready within 1s" in caplog.text
    assert "giving up" in caplog.text
    assert rig.status() is None


async def test_a_worker_exiting_before_ready_fails_fast_with_its_output(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "roost.supervisor")
    program = "import sys; print('boom: bad settings', file=sys.stderr); sys.exit(5)"
    spec = WorkerSpec("broken", 0, [sys.executable, "-c", program])
    supervisor = Supervisor([[spec]], rig.config(start_retries=0))
    with pytest.raises(StartupError, match=r"worker broken-0 did not start \(exit code 5\)"):
        await asyncio.wait_for(supervisor.run(handle_signals=False), 10)
    assert "boom: bad settings" in caplog.text, "the error shows the worker's last output"


async def test_once_running_a_worker_that_cannot_start_again_is_retried_without_limit(
    rig: Rig,
) -> None:
    # ready once, then every later process exits at once: during start-up that would be
    # fatal (start_retries=0), but a running node keeps trying (with backoff)
    flaky = rig.spec(
        "flaky", 0, "--exit-after", "0.2", "--once", rig.once("f"), "--later-exit", "4"
    )
    supervisor = Supervisor(
        [[flaky]], rig.config(start_retries=0, restart_backoff_s=0.05, restart_backoff_max_s=0.1)
    )
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    try:
        await wait_until(
            lambda: worker_in(supervisor.snapshot(), "flaky-0").restarts >= 3, 15, "retries"
        )
        worker = worker_in(supervisor.snapshot(), "flaky-0")
        assert worker.state in ("starting", "backoff") and supervisor.state == "running"
        assert worker.last_exit.code == 4
    finally:
        supervisor.request_stop()
        await asyncio.wait_for(task, 20)


async def test_a_hung_worker_is_reported_unhealthy_killed_and_restarted(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "roost.supervisor")
    hangs = rig.spec("hangs", 0, "--hang-after", "0.3", "--once", rig.once("hang"))
    supervisor = Supervisor([[hangs]], rig.config(heartbeat_s=0.2))
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    try:
        await wait_until(lambda: rig.events("hangs-0", "hang"), 15, "the worker to hang")
        hung = rig.events("hangs-0", "hang")[0]
        await wait_until(
            lambda: (
                worker_in(supervisor.snapshot(), "hangs-0").restarts == 1
                and worker_in(supervisor.snapshot(), "hangs-0").state == "ready"
            ),
            10,
            "the restart",
        )
        worker = worker_in(supervisor.snapshot(), "hangs-0")
    finally:
        supervisor.request_stop()
        await asyncio.wait_for(task, 20)
    assert worker.pid != hung["pid"] and not alive(hung["pid"])
    assert worker.last_exit.signal == "SIGKILL"
    assert worker.last_exit.reason.startswith("no heartbeat for")
    assert f"hangs-0 (pid {hung['pid']}) is unhealthy: no heartbeat for" in caplog.text
    # 0.6s (3 beats of 0.2s) after its last beat, which was at most 0.2s before it hung
    killed = next(r for r in caplog.records if "is unhealthy" in r.getMessage())
    assert 0.4 <= killed.created - hung["t"] < 2.0


async def test_a_worker_stopping_by_itself_gets_the_stop_timeout_not_the_heartbeat_limit(
    rig: Rig,
) -> None:
    supervisor = Supervisor(
        [
            [
                rig.spec("slow", 0, "--linger", "1.0", "--once", rig.once("slow")),
                rig.spec("stuck", 0, "--linger", "30", "--once", rig.once("stuck")),
            ]
        ],
        rig.config(heartbeat_s=0.2, stop_timeout_s=1.5),
    )
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    try:
        await wait_until(
            lambda: all(w.restarts == 1 for w in supervisor.snapshot().workers),
            15,
            "both to exit and come back",
        )
        snapshot = supervisor.snapshot()
    finally:
        supervisor.request_stop()
        await asyncio.wait_for(task, 20)
    # 1s without beats after saying "stopping" is no hang: it exits by itself
    assert worker_in(snapshot, "slow-0").last_exit.code == 0
    assert worker_in(snapshot, "slow-0").last_exit.reason == ""
    stuck = worker_in(snapshot, "stuck-0").last_exit
    assert stuck.signal == "SIGKILL" and stuck.reason == "did not exit within 1.5s of stopping"
    lingered = rig.events("stuck-0", "linger")[0]["t"]
    assert stuck.at - lingered >= 1.5


async def test_stop_sigkills_a_worker_ignoring_sigterm_and_what_a_worker_left_behind(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "roost.supervisor")
    supervisor = Supervisor(
        [[rig.spec("stubborn", 0, "--ignore-term"), rig.spec("parent", 0, "--child")]],
        rig.config(stop_timeout_s=1.0),
    )
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    await wait_until(lambda: supervisor.state == "running", 15, "ready")
    child = rig.events("parent-0", "child")[0]["child"]
    stubborn = worker_in(supervisor.snapshot(), "stubborn-0").pid
    assert alive(child) and alive(stubborn)
    started = time.monotonic()
    supervisor.request_stop()
    await asyncio.wait_for(task, 10)
    assert 1.0 <= time.monotonic() - started < 4.0
    assert f"stubborn-0 (pid {stubborn}) did not stop within 1s: killing it" in caplog.text
    assert "parent-0 left processes in its group: killing them" in caplog.text
    assert worker_in(supervisor.snapshot(), "stubborn-0").last_exit.signal == "SIGKILL"
    assert not alive(child) and not any(alive(pid) for pid in rig.started_pids())


async def test_worker_link_speaks_json_lines_and_is_inert_outside_a_supervisor(
    tmp_path: Path,
) -> None:
    inert = WorkerLink.from_env({})
    assert not inert.supervised
    await inert.ready(anything=1)  # nothing to tell, nothing fails
    await inert.close()
    with pytest.raises(ValueError, match="not an open file descriptor"):
        WorkerLink.from_env({"ROOST_HEALTH_FD": "seven"})
    with (tmp_path / "file").open("w") as regular, pytest.raises(ValueError, match="not a pipe"):
        WorkerLink.from_env({"ROOST_HEALTH_FD": str(regular.fileno())})

    read_fd, write_fd = os.pipe()
    # no ROOST_SUPERVISOR_PID: this test process must not arm a parent-death signal
    env = {"ROOST_HEALTH_FD": str(write_fd), "ROOST_HEARTBEAT_S": "0.05", "OTHER": "kept"}
    link = WorkerLink.from_env(env)
    assert link.supervised and env == {"OTHER": "kept"}, "link variables are not inherited"
    with pytest.raises(ValueError, match="keep ready details small"):
        await link.ready(blob="x" * 5000)
    assert not link.is_ready
    await link.ready(address="127.0.0.1:9090")
    await link.ready(address="twice")  # only the first counts
    await asyncio.sleep(0.3)
    await link.close()
    with os.fdopen(read_fd, "rb") as pipe:
        lines = [json.loads(line) for line in pipe.read().splitlines()]
    assert lines[0] == {"address": "127.0.0.1:9090", "state": "ready", "pid": os.getpid()}
    assert {"state": "alive"} in lines[1:-1] and len(lines) >= 4
    assert lines[-1]["state"] == "stopping"


def test_bad_specs_are_rejected(rig: Rig) -> None:
    with pytest.raises(ValueError, match="listed twice"):
        Supervisor([[rig.spec("a")], [rig.spec("a")]], rig.config())
    with pytest.raises(ValueError, match="nothing to supervise"):
        Supervisor([[], []], rig.config())
    with pytest.raises(ValueError, match="names the worker's log file"):
        WorkerSpec("../etc", 0, ["true"])
    with pytest.raises(ValueError, match="heartbeat_s must be > 0"):
        rig.config(heartbeat_s=0)


# --- the supervisor as its own process --------------------------------------------------------


def test_sigterm_stops_everything_in_order_and_a_second_supervisor_is_refused(
    rig: Rig, spawned: list[subprocess.Popen[str]]
) -> None:
    phases = [[rig.spec("a")], [rig.spec("b", 0), rig.spec("b", 1)]]
    proc = rig.spawn(phases, **rig.config_values())
    spawned.append(proc)
    wait_until_sync(lambda: _running(rig), 20, "the supervisor to run its workers")

    second = subprocess.run(
        [sys.executable, str(HELPER), "supervise", str(rig.spec_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 3, second.stderr
    assert f"another supervisor (pid {proc.pid}) is already running" in second.stderr
    assert len(rig.started_pids()) == 3, "the refused supervisor started nothing"

    shown = cli(rig.home, "status")
    assert shown.returncode == 0, shown.stderr
    assert f"roostd pid {proc.pid}" in shown.stdout and "3/3 workers ready" in shown.stdout
    for event in rig.events(event="start"):
        role, index = event["name"].split("-")
        row = re.search(
            rf"│ {role}\s+│\s+{index} │\s+{event['pid']} │ ready\s+│\s+0 │", shown.stdout
        )
        assert row, shown.stdout
    as_json = cli(rig.home, "status", "--json")
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 0 and data["running"] and data["pid"] == proc.pid
    assert [w["state"] for w in data["workers"]] == ["ready"] * 3

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert time.monotonic() - started < 5
    assert not any(alive(pid) for pid in rig.started_pids())
    stopped = {e["name"]: e["t"] for e in rig.events(event="stop")}
    assert (
        set(stopped) == {"a-0", "b-0", "b-1"}
        and max(stopped["b-0"], stopped["b-1"]) < stopped["a-0"]
    )
    log = rig.supervisor_log.read_text()
    assert "stopping: received SIGTERM" in log and "supervisor stopped" in log

    gone = cli(rig.home, "status")
    assert gone.returncode == 1
    assert f"roostd is not running (no status in {rig.status_path})" in gone.stdout
    gone_json = cli(rig.home, "status", "--json")
    assert gone_json.returncode == 1 and json.loads(gone_json.stdout)["running"] is False


def test_workers_exit_when_the_supervisor_is_killed(
    rig: Rig, spawned: list[subprocess.Popen[str]]
) -> None:
    # `stubborn` ignores SIGTERM (the parent-death signal): the link's watchdog ends it
    # after stop_timeout_s
    phases = [[rig.spec("plain"), rig.spec("stubborn", 0, "--ignore-term")]]
    proc = rig.spawn(phases, **rig.config_values(stop_timeout_s=1.0))
    spawned.append(proc)
    wait_until_sync(lambda: _running(rig), 20, "the supervisor to run its workers")
    pids = rig.started_pids()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    wait_until_sync(lambda: not any(alive(pid) for pid in pids), 6, "orphaned workers to exit")
    assert rig.events("plain-0", "stop"), "the plain worker stopped cleanly (SIGTERM)"
    assert not rig.events("stubborn-0", "stop")

    stale = cli(rig.home, "status")
    assert stale.returncode == 1
    assert f"pid {proc.pid}, which wrote {rig.status_path}, is gone" in stale.stdout
    # the lock died with the supervisor: a new one may start
    lock = SupervisorLock(rig.home / "run" / "roostd.lock")
    lock.acquire()
    lock.release()


def test_a_second_signal_kills_the_workers_at_once(
    rig: Rig, spawned: list[subprocess.Popen[str]]
) -> None:
    phases = [[rig.spec("stubborn", 0, "--ignore-term")]]
    proc = rig.spawn(phases, **rig.config_values(stop_timeout_s=30.0))
    spawned.append(proc)
    wait_until_sync(lambda: _running(rig), 20, "the supervisor to run its worker")
    pid = rig.started_pids()[0]
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None and alive(pid), "waiting out the stop timeout"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)  # an impatient second Ctrl-C
    assert proc.wait(5) == 0
    assert time.monotonic() - started < 3 and not alive(pid)
    assert "killing the workers now" in rig.supervisor_log.read_text()


# --- roostd start ------------------------------------------------------------------------------

ALL_OFF = {
    "registry": 0,
    "state": 0,
    "secret": 0,
    "catalog": 0,
    "harness": 0,
    "agent": 0,
    "inference": 0,
    "embedding": 0,
    "kv": 0,
    "vec": 0,
}


def roostd(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=timeout, module="roost.daemon")


def write_config(home: Path, nats_url: str, workers: dict[str, int], extra: str = "") -> None:
    home.mkdir(parents=True, exist_ok=True)
    counts = "\n".join(f"{role} = {count}" for role, count in {**ALL_OFF, **workers}.items())
    (home / "config.toml").write_text(
        f'[bus]\nbackend = "nats"\nurl = "{nats_url}"\n{extra}'
        "[distributed]\nheartbeat_s = 0.5\nrestart_backoff_s = 0.2\nstop_timeout_s = 5\n"
        "start_timeout_s = 60\nconnect_timeout_s = 5\n"
        + "".join(f'{role} = "127.0.0.1:{free_port()}"\n' for role in GRPC_PORTS)
        + f"[distributed.workers]\n{counts}\n"
    )


def start_roostd(tmp_path: Path, home: Path) -> subprocess.Popen[str]:
    log = (tmp_path / "roostd.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-c", "from roost.daemon.main import main; main()", "start"],
        env=cli_env(home),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(
    proc: subprocess.Popen[str],
    home: Path,
    log: Path,
    until: Callable[[dict[str, Any]], bool] = lambda status: True,
) -> dict[str, Any]:
    """roostd's status as ``roost status --json`` prints it, once every worker is ready
    (and ``until`` holds)."""
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        shown = cli(home, "status", "--json")
        data = json.loads(shown.stdout) if shown.stdout.strip() else {}
        all_ready = all(w["state"] == "ready" for w in data.get("workers", []))
        if shown.returncode == 0 and data.get("state") == "running" and all_ready and until(data):
            found.append(data)
            return True
        return False

    wait_until_sync(ready, 90, "roostd to report its workers ready")
    return found[-1]


async def kv_round_trip(url: str, key: str, value: bytes) -> bytes:
    from roost.bus._nats import NatsBus
    from roost.protocol import KvGet, KvPut, KvValue, RequestMessage, from_body, to_body
    from roost.services import call_service, raise_for_error

    async with NatsBus(url, client_name="test-supervisor") as bus:
        for op, body in (("put", KvPut(key=key, value=value)), ("get", KvGet(key=key))):
            request = RequestMessage(
                service="kv",
                op=op,
                body=to_body(body),
                agent="tester",
                session="s1",
                branch="main",
                timeout_s=10.0,
            )
            result = raise_for_error(await call_service(bus, request))
        got = from_body(result, KvValue)
        assert got.found
        return got.value


@pytest.mark.nats
@pytest.mark.e2e
def test_roostd_start_runs_restarts_and_stops_kv_and_vec_workers(
    tmp_path: Path, nats_server: NatsServer, spawned: list[subprocess.Popen[str]]
) -> None:
    home = tmp_path / "home"
    write_config(home, nats_server.url, {"kv": 2, "vec": 1})
    env = cli_env(home)
    proc = start_roostd(tmp_path, home)
    spawned.append(proc)

    log = tmp_path / "roostd.log"
    first = wait_ready(proc, home, log)
    assert [(w["role"], w["index"]) for w in first["workers"]] == [("kv", 0), ("kv", 1), ("vec", 0)]
    assert asyncio.run(kv_round_trip(nats_server.url, "greeting", b"hello")) == b"hello"

    # a second roostd on the same home is refused
    again = roostd(env, "start")
    assert again.returncode == 1 and f"already running on {home} (pid {proc.pid})" in again.stderr

    victim = file_worker(first, "kv-0")["pid"]
    os.kill(victim, signal.SIGKILL)
    after = wait_ready(proc, home, log, until=lambda s: file_worker(s, "kv-0")["restarts"] == 1)
    kv0 = file_worker(after, "kv-0")
    assert kv0["pid"] != victim and kv0["last_exit"]["signal"] == "SIGKILL"
    assert asyncio.run(kv_round_trip(nats_server.url, "greeting", b"again")) == b"again"
    pids = [w["pid"] for w in after["workers"]] + [victim]

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()
    assert not any(alive(pid) for pid in pids)
    text = log.read_text()
    assert f"kv-0 (pid {victim}) killed by SIGKILL" in text and "kv-0: restart 1 in 0.2s" in text
    assert "serving kv on" in (home / "logs" / "kv-1.log").read_text()
    assert cli(home, "status").returncode == 1


COUNTER = """
async def run(ctx, input):
    count = int(await ctx.kv.get_text("count", "0")) + 1
    await ctx.kv.put("count", str(count))
    return {"count": count, "pid": __import__("os").getpid()}
"""


@pytest.mark.nats
@pytest.mark.temporal
@pytest.mark.e2e
async def test_roostd_agent_worker_executes_durable_runs(
    tmp_path: Path,
    nats_server: NatsServer,
    temporal_env: dict[str, str],
    spawned: list[subprocess.Popen[str]],
) -> None:
    from roost.config import Settings
    from roost.platform import Platform

    home = tmp_path / "home"
    address = temporal_env["ROOST_WORKFLOWS__TEMPORAL_ADDRESS"]
    queue = temporal_env["ROOST_WORKFLOWS__TASK_QUEUE"]
    workflows = f'[workflows]\ntemporal_address = "{address}"\ntask_queue = "{queue}"\n'
    # the agent worker reaches registry, state and secrets through their gRPC services
    coordination = {"registry": 1, "state": 1, "secret": 1}
    write_config(home, nats_server.url, {**coordination, "agent": 1, "kv": 1}, extra=workflows)
    proc = start_roostd(tmp_path, home)
    spawned.append(proc)
    status = await asyncio.to_thread(wait_ready, proc, home, tmp_path / "roostd.log")
    agent_pid = file_worker(status, "agent-0")["pid"]
    assert file_worker(status, "agent-0")["details"]["task_queue"] == queue

    agent = tmp_path / "counter"
    agent.mkdir()
    (agent / "agent.toml").write_text(
        'name = "counter"\nruntime = "python"\nentry = "agent:run"\nservices = ["kv"]\n'
    )
    (agent / "agent.py").write_text(COUNTER)
    settings = Settings(
        home=home,
        bus={"backend": "nats", "url": nats_server.url},
        workflows={"temporal_address": address, "task_queue": queue},
    )
    # this process only starts the run (no Temporal worker here): roostd's agent worker
    # executes it, calling the kv worker
    async with await Platform.open(settings, start_services=False, worker=False) as platform:
        await platform.deploy(agent)
        result = await platform.run("counter", "x", timeout_s=60)
    assert result.ok, result.complete.error
    assert result.output == {"count": 1, "pid": agent_pid}

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0


def test_roostd_start_rejects_bad_configuration_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    nats = {"ROOST_BUS__BACKEND": "nats"}
    cases = [
        (
            {**nats, "ROOST_DISTRIBUTED__WORKERS": '{"teleport": 1}'},
            "unknown worker role(s) 'teleport'",
        ),
        (
            {**nats, "ROOST_DISTRIBUTED__WORKERS": '{"kv": -1}'},
            "kv = -1: a worker count is a whole number >= 0",
        ),
        ({"ROOST_BUS__BACKEND": "memory"}, 'distributed mode needs bus.backend = "nats"'),
        (
            {**nats, "ROOST_STATE__BACKEND": "postgres"},
            'state.backend = "postgres" needs state.url',
        ),
        ({**nats, "ROOST_DISTRIBUTED__WORKERS": json.dumps(ALL_OFF)}, "no workers to run"),
    ]
    for env, message in cases:
        proc = roostd(cli_env(home, **env), timeout=30)
        assert proc.returncode == 2, (env, proc.stderr)
        assert message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (home / "logs").exists(), "nothing was started"


def test_roostd_start_fails_fast_when_nats_is_unreachable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    write_config(home, url, {"kv": 1})
    env = cli_env(home, ROOST_DISTRIBUTED__CONNECT_TIMEOUT_S="2")
    started = time.monotonic()
    proc = roostd(env, "start", timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 1
    assert f"roostd: error: cannot reach NATS at {url} within 2s" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (home / "logs").exists()


@pytest.mark.nats
def test_roostd_start_fails_fast_when_postgres_is_unreachable(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    home = tmp_path / "home"
    port = free_port()  # nothing listens there
    database = f"postgresql+psycopg://roost@127.0.0.1:{port}/roost"
    write_config(home, nats_server.url, {"kv": 1})
    env = cli_env(
        home,
        ROOST_STATE__BACKEND="postgres",
        ROOST_STATE__URL=database,
        ROOST_DISTRIBUTED__CONNECT_TIMEOUT_S="2",
    )
    started = time.monotonic()
    proc = roostd(env, "start", timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 1
    assert f"cannot reach the database postgresql+psycopg://roost@127.0.0.1:{port}/roost" in (
        proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (home / "logs").exists()


def test_roostd_worker_rejects_an_unknown_or_missing_role(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", ROOST_WORKER_ROLE="teleport")
    proc = roostd(env, "worker")
    assert proc.returncode == 2 and "unknown worker role 'teleport'" in proc.stderr
    env.pop("ROOST_WORKER_ROLE")
    proc = roostd(env, "worker")
    assert proc.returncode == 2 and "ROOST_WORKER_ROLE is not set" in proc.stderr
