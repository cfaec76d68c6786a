"""A local dev cluster: distributed mode on one machine, started and stopped by one call.

>>> with DevCluster(home) as cluster:          # doctest: +SKIP
...     cluster.client_addresses["harness"]    # what `roost` (client.toml) talks to

:class:`DevCluster` starts, in order and each on a free loopback port:

* NATS with JetStream (:class:`~roost.devservers.NatsServer`),
* Postgres with pgvector (:class:`~roost.devservers.PostgresServer`) and its ``roost``
  database,
* a Temporal dev server (:class:`~roost.devservers.TemporalServer`),
* ``roostd`` (``python -m roost.daemon start``) over them, with every worker role, under its
  own home ``$ROOST_HOME/dev/node`` and a ``config.toml`` written there,

waits until roostd reports every worker ready, and then writes ``$ROOST_HOME/client.toml`` so
that plain ``roost`` commands use the cluster. :meth:`DevCluster.stop` undoes it all in reverse
order: the client file (only the one it wrote), roostd, Temporal, Postgres, NATS.

Every server keeps its data under ``$ROOST_HOME/dev`` (so the next start finds the agents,
sessions and runs of the last one) and its log in ``$ROOST_HOME/dev/logs``; the workers log in
``$ROOST_HOME/dev/node/logs``. The ports of the last start are reused when they are free, so
addresses stay stable across restarts.

One cluster runs per home: a lock (``dev/cluster.lock``, held for the cluster's lifetime and
released by the kernel if its process dies) guards it, and ``dev/cluster.json`` records the
addresses and the pids of what runs (a :class:`~roost.devcluster.ClusterState`).
:func:`dev_cluster_status` reads both; :func:`stop_dev_cluster` stops the cluster from another
process, or the processes a killed one left behind. Nothing here prints: progress goes to a
:class:`Progress`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

import msgspec

from roost._proc import (
    free_port,
    guarded_argv,
    pid_alive,
    port_free,
    start_ticks,
    still_running,
    terminate,
    write_atomic,
)
from roost.config import GRPC_PORTS, WORKER_ROLES, RpcSecurityConfig
from roost.devcluster._state import (
    ClusterPhase,
    ClusterState,
    ClusterStateError,
    ProcessRef,
    WorkerRef,
    read_cluster_state,
    write_cluster_state,
)
from roost.devservers import DevServer, DevServerError
from roost.devservers.nats import NatsServer
from roost.devservers.postgres import PostgresServer
from roost.devservers.temporal import TemporalServer

if TYPE_CHECKING:
    from roost.supervisor import SupervisorSnapshot, WorkerSnapshot

__all__ = [
    "DEFAULT_WORKERS",
    "DevCluster",
    "DevClusterError",
    "DevClusterStatus",
    "DevPaths",
    "Progress",
    "SilentProgress",
    "dev_cluster_status",
    "stop_dev_cluster",
]

#: Worker processes per role unless told otherwise: one of each, two where the load goes.
DEFAULT_WORKERS: dict[str, int] = dict.fromkeys(WORKER_ROLES, 1) | {"agent": 2, "inference": 2}
DATABASE = "roost"
_HOST = "127.0.0.1"  # a dev cluster is for this machine only
_NODE, _CLIENT = "dev", "cli"  # the names in the dev cluster's node credentials
# What every file written for the CLI starts with: how a later start or stop recognises its own
# file (and never touches one the user wrote).
_CLIENT_MARK = "# written by `roost dev up` for "
# The order things stop in: the reverse of the start order.
_STOP_ORDER = ("roostd", "temporal", "postgres", "nats")
_LABELS = {"nats": "NATS", "postgres": "Postgres", "temporal": "Temporal", "roostd": "roostd"}
# Postgres' fast shutdown is SIGINT (SIGTERM waits for every client to leave).
_STOP_SIGNALS = {"postgres": signal.SIGINT}
_POLL_S = 0.25


class DevClusterError(RuntimeError):
    """The dev cluster could not start or stop; the message says what failed, in one line."""


class Progress(Protocol):
    """What :class:`DevCluster` reports as it goes (the CLI shows a spinner per step and a
    line per finished step); :class:`SilentProgress` reports nothing."""

    def step(self, what: str) -> None:
        """A step begins, e.g. ``"starting NATS"``."""

    def update(self, detail: str) -> None:
        """News on the current step, e.g. how many workers are ready so far."""

    def done(self, message: str) -> None:
        """The current step finished, e.g. ``"NATS (JetStream) at nats://127.0.0.1:4222"``."""

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the cluster."""

    def failed(self, message: str) -> None:
        """:meth:`DevCluster.start` failed (or was interrupted: ``"interrupted"``); the steps
        that stop what it started follow."""


class SilentProgress:
    """A :class:`Progress` that reports nothing (the default)."""

    def step(self, what: str) -> None:
        pass

    def update(self, detail: str) -> None:
        pass

    def done(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def failed(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class DevPaths:
    """Where a dev cluster keeps its files under ``home`` (``$ROOST_HOME``)."""

    home: Path

    @property
    def dir(self) -> Path:
        return self.home / "dev"

    @property
    def state(self) -> Path:
        """``cluster.json``: addresses, pids, state."""
        return self.dir / "cluster.json"

    @property
    def lock(self) -> Path:
        return self.dir / "cluster.lock"

    @property
    def logs(self) -> Path:
        """The servers' and roostd's logs (the workers log under :attr:`node_home`)."""
        return self.dir / "logs"

    @property
    def nats_store(self) -> Path:
        return self.dir / "nats"

    @property
    def pki(self) -> Path:
        """The cluster's CA, node certificates, cluster key and credentials (mode 0700)."""
        return self.dir / "pki"

    @property
    def postgres_data(self) -> Path:
        return self.dir / "postgres"

    @property
    def temporal_db(self) -> Path:
        return self.dir / "temporal" / "temporal.db"

    @property
    def node_home(self) -> Path:
        """roostd's own ``ROOST_HOME``: its config, status file and worker logs."""
        return self.dir / "node"

    @property
    def node_config(self) -> Path:
        return self.node_home / "config.toml"

    @property
    def roostd_log(self) -> Path:
        return self.logs / "roostd.log"


# --- processes ------------------------------------------------------------------------------


def _process_ref(pid: int | None) -> ProcessRef | None:
    return None if pid is None else ProcessRef(pid, start_ticks(pid))


def _still_ours(ref: ProcessRef) -> bool:
    """Whether the process ``ref`` recorded still runs (the same one, not a reused pid)."""
    return still_running(ref.pid, ref.start)


def _worker_refs(workers: Sequence[WorkerSnapshot]) -> list[WorkerRef]:
    """What ``cluster.json`` keeps of roostd's workers."""
    return [
        WorkerRef(name=w.name, role=w.role, index=w.index, pid=w.pid, state=w.state)
        for w in workers
    ]


def _terminate(pid: int, sig: int, grace: float) -> None:
    """Send ``sig``, then SIGKILL after ``grace`` seconds; return once ``pid`` is gone (or
    raise :class:`DevClusterError` if even SIGKILL does not end it within 10 s)."""
    if not terminate(pid, sig, grace=grace, kill_wait=10.0):
        raise DevClusterError(f"process {pid} did not exit after SIGKILL")


def _port_of(address: object) -> int | None:
    """The port of ``host:port`` or a URL ending in one (``None`` if there is none)."""
    if not isinstance(address, str):
        return None
    tail = address.rpartition(":")[2].split("/", 1)[0]
    return int(tail) if tail.isdigit() and 0 < int(tail) < 65536 else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_state(path: Path) -> tuple[ClusterState | None, ClusterStateError | None]:
    """``cluster.json``, or None and why it cannot be used (no error when there is none)."""
    try:
        return read_cluster_state(path), None
    except FileNotFoundError:
        return None, None
    except ClusterStateError as exc:
        return None, exc


def _last_error(path: Path) -> str:
    """The last line of roostd's log that reports an error ('' if there is none): its own
    ``roostd: error: ...`` line when it gave up, or a logged ERROR."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    # only this start's lines: each start writes a "--- roost dev up" header first
    text = text.rpartition("--- roost dev up")[2]
    found = [ln.strip() for ln in text.splitlines() if "error" in ln.lower() and ln.strip()]
    return found[-1] if found else ""


def _client_mark(dev_dir: Path) -> str:
    """The first line of a client file written for the cluster in ``dev_dir``."""
    return f"{_CLIENT_MARK}{dev_dir}; removed when it stops\n"


def _remove_stale_client(paths: DevPaths, state: ClusterState) -> str:
    """Remove the client file a killed cluster of ``paths`` left (recognised by its first
    line, so a file the user wrote since stays); its path, or '' if there was none."""
    recorded = state.client_config
    if not recorded:
        return ""
    path = Path(recorded)
    try:
        if not path.read_text().startswith(_client_mark(paths.dir)):
            return ""
        path.unlink()
    except OSError:
        return ""
    return str(path)


def _security_lines(security: RpcSecurityConfig) -> list[str]:
    """``security`` as the lines of a TOML table (the keys that are set)."""
    lines = []
    for key, value in security.model_dump(exclude_defaults=True).items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, list):
            lines.append(f"{key} = [{', '.join(_toml_string(str(v)) for v in value)}]")
        else:
            lines.append(f"{key} = {_toml_string(str(value))}")
    return lines


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the cluster ----------------------------------------------------------------------------


class DevCluster:
    """NATS, Postgres, Temporal and a ``roostd`` node for one ``ROOST_HOME`` (see the module
    docstring). :meth:`start` returns once every worker is ready; :meth:`stop` stops it all.

    Args:
        home: the user's ``ROOST_HOME``; everything lives under ``home/dev``.
        workers: worker processes per role (roles not named: :data:`DEFAULT_WORKERS`).
        client_config: the file the CLI reads its deployment from (``home/client.toml`` if
            unset); written once the cluster is ready, removed by :meth:`stop` if unchanged.
            An existing file that ``roost dev up`` did not write is left alone.
        ready_timeout_s: how long roostd may take to have every worker ready.
        stop_timeout_s: how long roostd gets to stop its workers before it is killed.
        progress: where progress goes (nowhere by default).
    """

    def __init__(
        self,
        home: Path,
        *,
        workers: Mapping[str, int] | None = None,
        client_config: Path | None = None,
        ready_timeout_s: float = 180.0,
        stop_timeout_s: float = 60.0,
        progress: Progress | None = None,
    ) -> None:
        self.paths = DevPaths(Path(home).expanduser().absolute())
        unknown = sorted(set(workers or {}) - set(WORKER_ROLES))
        if unknown:
            raise ValueError(
                f"unknown worker role(s) {', '.join(unknown)} (roles: {', '.join(WORKER_ROLES)})"
            )
        negative = [f"{r}={n}" for r, n in (workers or {}).items() if n < 0]
        if negative:
            raise ValueError(f"worker counts are whole numbers >= 0, not {', '.join(negative)}")
        self.workers: dict[str, int] = DEFAULT_WORKERS | dict(workers or {})
        if not any(self.workers.values()):
            raise ValueError("no workers to run: every worker count is 0")
        self.client_config = (
            Path(client_config) if client_config is not None else self.paths.home / "client.toml"
        )
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.progress: Progress = progress or SilentProgress()
        self.state: ClusterPhase = "idle"
        self.nats: NatsServer | None = None
        self.postgres: PostgresServer | None = None
        self.temporal: TemporalServer | None = None
        # the addresses stay known after a stop: cluster.json keeps them for the next start
        self.nats_url = ""
        self.database_url = ""
        self.temporal_address = ""
        self.roostd: subprocess.Popen[bytes] | None = None
        self.client_addresses: dict[str, str] = {}
        """``host:port`` of each coordination service (registry, harness, state, ...)."""
        self.client_written = False
        """Whether :attr:`client_config` is the file this cluster wrote."""
        self.worker_pids: list[WorkerRef] = []
        """roostd's workers as last seen (kept current while the cluster runs)."""
        self.started_at: float | None = None
        self._client_text = ""
        self._security: dict[str, RpcSecurityConfig] | None = None
        self._lock: Any = None  # roost.supervisor.SupervisorLock, held while the cluster runs
        self._previous: ClusterState | None = None  # the last cluster's cluster.json
        self._step = "starting the dev cluster"  # for errors: what was under way

    # --- properties ---------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` is under way (a second Ctrl-C should :meth:`hurry` it)."""
        return self.state == "stopping"

    def client_env(self) -> dict[str, str]:
        """The environment variables equivalent to the written ``client.toml``."""
        env = {f"ROOST_CLIENT__{role.upper()}": a for role, a in self.client_addresses.items()}
        for key, value in self._client_security().model_dump(exclude_defaults=True).items():
            env[f"ROOST_CLIENT__SECURITY__{key.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        return env

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Start everything in order and wait until every roostd worker is ready.

        Raises :class:`DevClusterError` naming what failed, after reporting it
        (:meth:`Progress.failed`) and stopping what was started; an interrupt
        (KeyboardInterrupt) stops what was started the same way.
        """
        from roost.supervisor import AlreadyRunningError, SupervisorLock

        if self.state != "idle":
            raise DevClusterError(f"this dev cluster was already started (it is {self.state})")
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        lock = SupervisorLock(self.paths.lock)
        try:
            lock.acquire()
        except AlreadyRunningError as exc:
            who = f" (pid {exc.pid})" if exc.pid else ""
            message = (
                f"a dev cluster already runs for {self.paths.home}{who}; `roost dev down` stops it"
            )
            self.progress.failed(message)
            raise DevClusterError(message) from None
        self._lock = lock
        try:
            self._previous = self._read_previous()
        except DevClusterError as exc:
            # before the first _record(): the file stays for the roost that understands it
            lock.release()
            self._lock = None
            self.progress.failed(str(exc))
            raise
        self.state = "starting"
        self.started_at = time.time()
        try:
            self._stop_leftovers()
            self._record()
            self._start_nats()
            self._start_postgres()
            self._start_temporal()
            self._start_roostd()
            self._wait_ready()
            self._write_client_config()
            self.state = "running"
            self._record()
        except KeyboardInterrupt:
            self.progress.failed("interrupted")
            self.stop()
            raise
        except Exception as exc:
            # an unforeseen error (a file that cannot be written, ...) still names its step
            error = (
                exc
                if isinstance(exc, DevClusterError)
                else DevClusterError(f"{self._step} failed: {type(exc).__name__}: {_one_line(exc)}")
            )
            # said before the stop steps are reported, so the cause is the first thing shown
            self.progress.failed(str(error))
            self.stop()
            if error is exc:
                raise
            raise error from exc
        return self

    def stop(self) -> None:
        """Remove the client file (if it is ours), then stop roostd (SIGTERM, wait), Temporal,
        Postgres and NATS, reporting each. Idempotent. Raises :class:`DevClusterError` at the
        end if something could not be stopped (everything else is stopped regardless)."""
        if self.state in ("idle", "stopped"):
            return
        self.state = "stopping"
        problems: list[str] = []
        with contextlib.suppress(OSError):
            self._record()
        try:
            self._remove_client_config()
        except OSError as exc:
            problems.append(f"cannot remove {self.client_config}: {exc}")
        if self.roostd is not None:
            self._stop_step("roostd", self._stop_roostd, problems)
        for name in ("temporal", "postgres", "nats"):
            server = getattr(self, name)
            if server is not None:
                self._stop_step(name, server.stop, problems)
                setattr(self, name, None)
        self.state = "stopped"
        self.worker_pids = []
        with contextlib.suppress(OSError):
            self._record()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if problems:
            raise DevClusterError("; ".join(problems))

    def hurry(self) -> None:
        """Speed a stop up (a second Ctrl-C): roostd gets its second signal, on which it kills
        its workers instead of waiting for them."""
        if self.roostd is not None and self.roostd.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.roostd.send_signal(signal.SIGTERM)

    def wait(self, stop: Callable[[], bool] | None = None) -> str:
        """Block while everything runs; return why it no longer does (a process that exited),
        or ``""`` once ``stop()`` returns true. Ctrl-C (KeyboardInterrupt) ends it too. The
        worker pids in ``cluster.json`` are kept current (roostd restarts crashed workers)."""
        last_refresh = time.monotonic()
        while stop is None or not stop():
            problem = self.check()
            if problem:
                return problem
            if time.monotonic() - last_refresh > 2.0:
                last_refresh = time.monotonic()
                pids = self._worker_pids()
                if pids is not None and pids != self.worker_pids:
                    self.worker_pids = pids
                    self._record()
            time.sleep(_POLL_S)
        return ""

    def check(self) -> str:
        """``""`` while every process runs; otherwise what exited, in one line."""
        if self.roostd is not None and self.roostd.poll() is not None:
            from roost._proc import describe_returncode

            how = describe_returncode(self.roostd.returncode)[2]
            last = _last_error(self.paths.roostd_log)
            return (
                f"roostd exited ({how})"
                + (f": {last}" if last else "")
                + (f" (log: {self.paths.roostd_log})")
            )
        for name in ("temporal", "postgres", "nats"):
            server = getattr(self, name)
            if server is not None and not server.is_running:
                return f"{_LABELS[name]} exited (log: {server.log_path})"
        return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- starting -----------------------------------------------------------------------

    def _preferred_port(self, key: str) -> int | None:
        """The port ``key`` had in the last cluster, if it is free now (stable addresses)."""
        if self._previous is None:
            return None
        port = _port_of(self._previous.addresses.get(key))
        return port if port is not None and port_free(_HOST, port) else None

    def _begin(self, step: str) -> None:
        self._step = step
        self.progress.step(step)

    def _fail(self, what: str, exc: BaseException, log: Path | None = None) -> DevClusterError:
        where = f" (log: {log})" if log is not None else ""
        return DevClusterError(f"{what} failed: {_one_line(exc)}{where}")

    def _launch(self, server: DevServer, step: str) -> None:
        """Start ``server``; a failure is one line naming ``step`` and the server's log."""
        try:
            server.start()
        except (DevServerError, OSError) as exc:
            raise self._fail(step, exc, server.log_path) from None

    def _start_nats(self) -> None:
        self._begin("starting NATS")
        server = NatsServer(
            port=self._preferred_port("nats"),
            store_dir=self.paths.nats_store,
            log_dir=self.paths.logs,
            jetstream=True,
            startup_timeout=30.0,
            extra_args=["-c", str(self._nats_authorization())],
        )
        self._launch(server, "starting NATS")
        self.nats = server
        self.nats_url = server.url
        self._record()
        self.progress.done(f"NATS (JetStream) at {server.url}")

    def _start_postgres(self) -> None:
        self._begin("starting Postgres")
        server = PostgresServer(
            port=self._preferred_port("postgres"),
            data_dir=self.paths.postgres_data,
            log_dir=self.paths.logs,
            # a dev cluster keeps its data: crash safety on, unlike a test cluster
            durable=True,
            # every database worker holds a connection pool
            settings={"max_connections": "200"},
            startup_timeout=60.0,
        )
        self._launch(server, "starting Postgres")
        self.postgres = server
        self._record()
        try:
            self.database_url = server.ensure_database(DATABASE)
        except Exception as exc:  # the driver's own errors: report their first line
            raise self._fail(f"creating the database {DATABASE!r}", exc, server.log_path) from None
        self._record()
        self.progress.done(f"Postgres (pgvector) at {self.database_url}")

    def _start_temporal(self) -> None:
        self._begin("starting Temporal")
        server = TemporalServer(
            port=self._preferred_port("temporal") or 0,
            db_path=self.paths.temporal_db,
            log_dir=self.paths.logs,
            startup_timeout=90.0,
        )
        self._launch(server, "starting Temporal")
        self.temporal = server
        self.temporal_address = server.address
        self._record()
        self.progress.done(f"Temporal at {server.address}")

    def _grpc_ports(self) -> dict[str, int]:
        """A port per coordination service: last time's when free, else a new free one,
        never one the servers above use."""
        taken = {_port_of(a) for a in (self.nats_url, self.database_url, self.temporal_address)}
        ports: dict[str, int] = {}
        for role in GRPC_PORTS:
            port = self._preferred_port(role)
            while port is None or port in taken:
                port = free_port(_HOST)
            taken.add(port)
            ports[role] = port
        return ports

    def _node_config(self) -> str:
        lines = [
            "# Written by `roost dev up` at every start: change the cluster with its options.",
            "[bus]",
            'backend = "nats"',
            f"url = {_toml_string(self.nats_url)}",
            *self._bus_user_lines(),
            *self._grant_lines(),
            "[state]",
            'backend = "postgres"',
            f"url = {_toml_string(self.database_url)}",
            "[workflows]",
            f"temporal_address = {_toml_string(self.temporal_address)}",
            # with projection workers, runs' events take the JetStream path to the DAG
            *(
                ["[runtime]", 'record_events = "projection"']
                if self.workers.get("projection", 0) > 0
                else []
            ),
            "[distributed]",
            f'listen_host = "{_HOST}"',
            *(f"{role} = {_toml_string(a)}" for role, a in self.client_addresses.items()),
            "[distributed.workers]",
            *(f"{role} = {self.workers[role]}" for role in WORKER_ROLES),
            "[distributed.security]",
            *_security_lines(self._node_security()),
        ]
        return "\n".join(lines) + "\n"

    def _node_security(self) -> RpcSecurityConfig:
        """The dev cluster's gRPC trust, made on first use in its home (kept after): mTLS
        with its own CA, node credentials checked on every call."""
        if self._security is None:
            from roost.rpc import write_cluster_credentials

            self._security = write_cluster_credentials(self.paths.pki, [_NODE, _CLIENT])
        return self._security[_NODE]

    def _nats_authorization(self) -> Path:
        """The NATS server's users (one per role, ``roostd``, ``operator``) with their
        permissions; passwords made once in ``pki/bus`` (mode 0600), kept after."""
        from roost.bus import BUS_USERS, nats_authorization

        directory = self.paths.pki / "bus"
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.paths.pki, 0o700)
        passwords = {}
        for user in BUS_USERS:
            path = directory / f"{user}.password"
            if not path.exists():
                path.touch(mode=0o600)
                path.write_text(secrets.token_urlsafe(24))
            passwords[user] = path.read_text().strip()
        conf = self.paths.dir / "nats-auth.conf"
        conf.touch(mode=0o600)
        conf.write_text(nats_authorization(passwords))
        return conf

    def _bus_user_lines(self) -> list[str]:
        """``[bus]`` keys: roostd connects as ``roostd``, each worker as its role."""
        directory = self.paths.pki / "bus"
        return [
            'user = "roostd"',
            f"password_file = {_toml_string(str(directory / 'roostd.password'))}",
            f"credentials_dir = {_toml_string(str(directory))}",
        ]

    def _grant_lines(self) -> list[str]:
        """``[bus]`` keys: the runs' requests are signed and the services check them."""
        from roost.auth import write_grant_keys

        private, public = write_grant_keys(self.paths.pki)
        return [
            f"grant_key_file = {_toml_string(str(private))}",
            f"grant_public_key_file = {_toml_string(str(public))}",
        ]

    def _client_security(self) -> RpcSecurityConfig:
        """What the CLI presents: its own certificate and credential, no cluster key."""
        self._node_security()
        assert self._security is not None
        return self._security[_CLIENT].model_copy(update={"cluster_key_file": None})

    def _start_roostd(self) -> None:
        self._begin("starting roostd")
        ports = self._grpc_ports()
        self.client_addresses = {role: f"{_HOST}:{port}" for role, port in ports.items()}
        node = self.paths.node_home
        node.mkdir(parents=True, exist_ok=True)
        write_atomic(self.paths.node_config, self._node_config())
        # roostd reads its whole configuration from its own home: ROOST_* variables of this
        # shell (a bus URL, another home's config file) must not leak into it
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
        env["ROOST_HOME"] = str(node)
        argv = [sys.executable, "-m", "roost.daemon", "start"]
        # roostd gets SIGTERM (and stops its workers cleanly) should this process die
        # without stopping it; exit code 70 if this process died before the guard was set
        argv = guarded_argv(argv, orphaned_exit=70)
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        with self.paths.roostd_log.open("ab") as log:
            log.write(f"--- roost dev up: roostd for {node} at {time.ctime()}\n".encode())
            log.flush()
            try:
                self.roostd = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=node,
                    # its own session: a Ctrl-C in the terminal reaches only `dev up`, which
                    # then stops everything in order
                    start_new_session=True,
                )
            except OSError as exc:
                raise self._fail("starting roostd", exc) from None
        self._record()

    def _worker_pids(self) -> list[WorkerRef] | None:
        """The workers roostd reports (role, index, pid, state); ``None`` if it reports none."""
        found = self._roostd_status()
        return None if found is None else _worker_refs(found.workers)

    def _roostd_status(self) -> SupervisorSnapshot | None:
        from roost.daemon import paths
        from roost.supervisor import read_status

        home = self.paths.node_home
        found = read_status(paths.status_path(home), paths.lock_path(home))
        return found.snapshot if found.running else None

    def _wait_ready(self) -> None:
        assert self.roostd is not None
        expected = sum(self.workers.values())
        deadline = time.monotonic() + self.ready_timeout_s
        shown = ""
        while True:
            problem = self.check()
            if problem:
                raise DevClusterError(f"starting roostd failed: {problem}")
            snapshot = self._roostd_status()
            workers = snapshot.workers if snapshot is not None else []
            ready = [w for w in workers if w.state == "ready"]
            running = snapshot is not None and snapshot.state == "running"
            if running and workers and len(ready) == len(workers):
                break
            detail = f"starting roostd: {len(ready)}/{expected} workers ready"
            if detail != shown:
                self.progress.update(detail)
                shown = detail
            if time.monotonic() >= deadline:
                waiting = [w.name for w in workers if w.state != "ready"]
                raise DevClusterError(
                    f"roostd's workers were not ready within {self.ready_timeout_s:g}s "
                    f"(still waiting for {', '.join(waiting) or 'roostd to start them'}; "
                    f"logs: {self.paths.node_home / 'logs'})"
                )
            time.sleep(_POLL_S)
        self.worker_pids = _worker_refs(workers)
        self._record()
        counts = ", ".join(f"{r} {n}" for r, n in self.workers.items() if n)
        self.progress.done(f"roostd: {len(workers)} workers ready ({counts})")

    # --- the CLI's file ------------------------------------------------------------------

    def _client_mark(self) -> str:
        return _client_mark(self.paths.dir)

    def _write_client_config(self) -> None:
        path = self.client_config
        if path.exists():
            try:
                existing = path.read_text()
            except OSError:
                existing = ""
            # a file another dev cluster of this home left (its process was killed) is ours
            # to replace; any other file is the user's
            if not existing.startswith(self._client_mark()):
                self.progress.warn(
                    f"{path} exists and was not written by `roost dev up`: left as it is, so "
                    "the CLI keeps using what it names (the variables below select this "
                    "cluster)"
                )
                return
        lines = [
            self._client_mark().rstrip("\n"),
            *(f"{role} = {_toml_string(a)}" for role, a in self.client_addresses.items()),
            "[security]",
            *_security_lines(self._client_security()),
        ]
        text = "\n".join(lines) + "\n"
        tomllib.loads(text)  # what the CLI will parse: fail here, not there
        write_atomic(path, text)
        self._client_text = text
        self.client_written = True
        self._record()

    def _remove_client_config(self) -> None:
        if not self.client_written:
            return
        self.client_written = False
        try:
            current = self.client_config.read_text()
        except FileNotFoundError:
            return
        if current == self._client_text:  # changed by hand since: no longer ours to delete
            self.client_config.unlink(missing_ok=True)
        else:
            self.progress.warn(f"{self.client_config} was changed since it was written: kept")

    # --- stopping -----------------------------------------------------------------------

    def _stop_step(self, name: str, stop: Callable[[], object], problems: list[str]) -> None:
        label = _LABELS[name]
        self.progress.step(f"stopping {label}")
        try:
            stop()
        except Exception as exc:
            problems.append(f"stopping {label} failed: {_one_line(exc)}")
            self.progress.warn(problems[-1])
            return
        self.progress.done(f"stopped {label}")

    def _stop_roostd(self) -> None:
        proc = self.roostd
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                self.roostd = None
                raise DevClusterError(
                    f"roostd did not stop within {self.stop_timeout_s:g}s and was killed"
                ) from None
        self.roostd = None

    def _stop_leftovers(self) -> None:
        """Stop what a previous cluster of this home left running when its process died (we
        hold the lock, so that process is gone): its Postgres would block ours on the data
        directory, its roostd on the ports."""
        previous = self._previous
        if previous is None or previous.state == "stopped":
            return
        processes = previous.processes
        removed = _remove_stale_client(self.paths, previous)
        if removed:
            self.progress.warn(f"removed the stale {removed} of a killed dev cluster")
        live = [n for n in _STOP_ORDER if n in processes and _still_ours(processes[n])]
        if not live:
            return
        self._begin("stopping what the last dev cluster left running")
        try:
            stopped = _stop_processes(processes, live, self.stop_timeout_s)
        except DevClusterError as exc:
            raise DevClusterError(f"stopping the last dev cluster's processes: {exc}") from None
        self.progress.done(f"stopped what the last dev cluster left running: {stopped}")

    # --- state file ---------------------------------------------------------------------

    def _read_previous(self) -> ClusterState | None:
        """The last cluster's ``cluster.json``. A mangled one is as if none had run (with a
        warning); one of another version raises :class:`DevClusterError`, since what that
        cluster may have left running is unknown here."""
        try:
            return read_cluster_state(self.paths.state)
        except FileNotFoundError:
            return None
        except ClusterStateError as exc:
            if exc.version is not None:
                raise DevClusterError(str(exc)) from None
            self.progress.warn(f"{exc}: ignored (it is rewritten)")
            return None

    def _record(self) -> None:
        """Write ``cluster.json``: what runs now, so another process (``roost dev status``,
        ``down``, the next ``up``) knows, even should this one be killed."""
        processes = {
            "nats": _process_ref(self.nats.pid if self.nats else None),
            "postgres": _process_ref(self.postgres.pid if self.postgres else None),
            "temporal": _process_ref(self.temporal.pid if self.temporal else None),
            "roostd": _process_ref(self.roostd.pid if self.roostd else None),
        }
        addresses = {
            "nats": self.nats_url,
            "postgres": self.database_url,
            "temporal": self.temporal_address,
            **self.client_addresses,
        }
        if self.state == "stopped":
            processes = {}
            # the addresses stay (the next start reuses their ports if free), also those of
            # the last cluster that this one did not get to start
            if self._previous is not None:
                addresses = {
                    **self._previous.addresses,
                    **{k: v for k, v in addresses.items() if v},
                }
        state = ClusterState(
            state=self.state,
            pid=os.getpid(),
            home=str(self.paths.home),
            started_at=self.started_at,
            updated_at=time.time(),
            addresses={k: v for k, v in addresses.items() if v},
            processes={k: v for k, v in processes.items() if v is not None},
            workers=dict(self.workers),
            worker_pids=list(self.worker_pids),
            client_config=str(self.client_config) if self.client_written else None,
            node_home=str(self.paths.node_home),
            logs=str(self.paths.logs),
            worker_logs=str(self.paths.node_home / "logs"),
        )
        write_cluster_state(self.paths.state, state)


def _stop_processes(processes: Mapping[str, ProcessRef], names: list[str], grace: float) -> str:
    """Stop the recorded processes ``names`` (in :data:`_STOP_ORDER`); what was stopped."""
    stopped = []
    for name in _STOP_ORDER:
        ref = processes.get(name)
        if name in names and ref is not None and _still_ours(ref):
            _terminate(ref.pid, _STOP_SIGNALS.get(name, signal.SIGTERM), grace)
            stopped.append(f"{_LABELS[name]} (pid {ref.pid})")
    return ", ".join(stopped)


# --- from another process -------------------------------------------------------------------


@dataclass(frozen=True)
class DevClusterStatus:
    """What :func:`dev_cluster_status` found for a home."""

    running: bool
    """Whether a ``roost dev up`` holds the cluster of this home."""
    pid: int | None
    """That process's pid."""
    state: ClusterState | None
    """``cluster.json`` (addresses, pids, worker counts, ...), if there is one that this roost
    can read."""
    reason: str
    """Why it is not running (empty when it is)."""
    leftovers: dict[str, int] = field(default_factory=dict)
    """Processes (name: pid) a killed ``dev up`` left running; ``roost dev down`` stops them."""
    problem: str = ""
    """Why ``cluster.json`` could not be read: mangled, or of another roost version (empty
    when it could, or there is none)."""


def dev_cluster_status(home: Path) -> DevClusterStatus:
    """Whether a dev cluster runs for ``home``: its ``dev up`` process holds the lock, and
    ``cluster.json`` says what it started."""
    from roost.supervisor import lock_holder

    paths = DevPaths(Path(home).expanduser().absolute())
    state, error = _read_state(paths.state)
    problem = str(error) if error is not None else ""
    holder = lock_holder(paths.lock)
    if holder is not None:
        pid = holder or (state.pid if state is not None else None)
        return DevClusterStatus(True, pid, state, "", problem=problem)
    leftovers: dict[str, int] = {}
    if state is not None:
        for name in _STOP_ORDER:
            ref = state.processes.get(name)
            if ref is not None and _still_ours(ref):
                leftovers[name] = ref.pid
    if problem:
        reason = problem  # what runs is unknown: the file says, to a roost that reads it
    elif state is None:
        reason = f"no dev cluster has run for {paths.home}"
    elif leftovers:
        left = ", ".join(f"{_LABELS[n]} (pid {p})" for n, p in leftovers.items())
        reason = (
            f"the `roost dev up` process (pid {state.pid}) is gone without stopping; "
            f"still running: {left}"
        )
    else:
        reason = "stopped"
    return DevClusterStatus(False, None, state, reason, leftovers, problem)


def stop_dev_cluster(home: Path, *, timeout: float = 90.0) -> str:
    """Stop the dev cluster of ``home`` from another process: SIGTERM to its ``dev up``
    process, which stops everything in order; wait (up to ``timeout``) for it to exit. With
    no such process, stop what a killed one left running. Returns what was done, in one
    line ('' when nothing ran); raises :class:`DevClusterError` when it does not stop, or
    when ``cluster.json`` is of another roost version (whose ``dev down`` knows what runs)."""
    paths = DevPaths(Path(home).expanduser().absolute())
    found = dev_cluster_status(paths.home)
    if found.running:
        pid = found.pid
        if pid is None:
            raise DevClusterError(
                f"a dev cluster of {paths.home} holds {paths.lock} but names no pid"
            )
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while dev_cluster_status(paths.home).running and pid_alive(pid):
            if time.monotonic() >= deadline:
                raise DevClusterError(
                    f"the `roost dev up` process (pid {pid}) did not stop within {timeout:g}s"
                )
            time.sleep(0.1)
        return f"stopped the dev cluster of {paths.home} (pid {pid})"
    if found.state is None and not found.problem:
        return ""  # no cluster has run
    if found.state is not None and found.state.state == "stopped":
        return ""
    from roost.supervisor import AlreadyRunningError, SupervisorLock

    # a `dev up` starting meanwhile cleans up itself: never race it (nor overwrite its state)
    lock = SupervisorLock(paths.lock)
    try:
        lock.acquire()
    except AlreadyRunningError:
        return ""
    try:
        state, error = _read_state(paths.state)
        if error is not None and error.version is not None:
            # another roost's cluster: only that roost knows what it may have left running
            raise DevClusterError(str(error))
        if state is None:  # none, or mangled: as if no cluster had run (as `dev up` does)
            return ""
        stopped = _stop_processes(state.processes, list(_STOP_ORDER), min(timeout, 30.0))
        removed = _remove_stale_client(paths, state)
        state = msgspec.structs.replace(
            state,
            state="stopped",
            processes={},
            worker_pids=[],
            client_config=None,
            updated_at=time.time(),
        )
        write_cluster_state(paths.state, state)
    finally:
        lock.release()
    done = [f"stopped what a killed `roost dev up` left running: {stopped}"] if stopped else []
    done += [f"removed the stale {removed}"] if removed else []
    return "; ".join(done)
