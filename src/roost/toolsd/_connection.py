"""The daemon's one outbound connection: a bidirectional gRPC stream to a gateway.

The daemon dials out (it never listens), says :class:`Hello`, gets a :class:`Welcome`, then
serves calls until the stream ends. A stream that breaks is redialled with exponential
backoff and full jitter, rotating through the gateway addresses it knows, so a daemon whose
gateway died lands on another. A :class:`Goodbye` with ``reconnect=False`` (replaced by a
newer daemon of the same user, token revoked) and a refused token end the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import random
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import grpc

from roost.protocol import daemon as wire
from roost.toolsd._host import ToolHost

log = logging.getLogger("roost.toolsd")

TlsMode = Literal["tls", "insecure_tls_skip_verify", "h2c"]
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0
"""A connection that lasted this long resets the backoff."""


class DaemonStopped(Exception):
    """The daemon must not reconnect: the message says why (shown to the user)."""


@dataclass(frozen=True)
class Gateway:
    """One gateway address and how to reach it."""

    target: str  # host:port
    tls: TlsMode

    @classmethod
    def parse(cls, url: str, tls_mode: TlsMode | None = None) -> Gateway:
        """``https://host:port`` (TLS), ``http://host:port`` (h2c) or ``host:port`` (with
        ``tls_mode``, else h2c); ``tls_mode`` overrides what the URL implies."""
        parts = urlsplit(url if "://" in url else f"//{url}")
        if parts.scheme not in ("", "http", "https", "grpc", "grpcs") or not parts.hostname:
            raise ValueError(
                f"not a gateway address: {url!r} (use https://host:port or http://host:port)"
            )
        implied: TlsMode = "tls" if parts.scheme in ("https", "grpcs") else "h2c"
        port = parts.port or (443 if implied == "tls" else 9190)
        return cls(target=f"{parts.hostname}:{port}", tls=tls_mode or implied)


def _channel(gateway: Gateway, ca_file: str | None) -> grpc.aio.Channel:
    options = [("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_permit_without_calls", 1)]
    if gateway.tls == "h2c":
        return grpc.aio.insecure_channel(gateway.target, options=options)
    if gateway.tls == "tls":
        roots = Path(ca_file).read_bytes() if ca_file else None
        return grpc.aio.secure_channel(
            gateway.target, grpc.ssl_channel_credentials(root_certificates=roots), options=options
        )
    # insecure_tls_skip_verify: trust whatever certificate the gateway shows (self-signed
    # development set-ups): gRPC has no "don't verify", so pin the one it presents
    host, _, port = gateway.target.rpartition(":")
    pem = ssl.get_server_certificate((host, int(port)))
    name = _certificate_name(pem) or host
    return grpc.aio.secure_channel(
        gateway.target,
        grpc.ssl_channel_credentials(root_certificates=pem.encode()),
        options=[*options, ("grpc.ssl_target_name_override", name)],
    )


def _certificate_name(pem: str) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem.encode())
    with contextlib.suppress(x509.ExtensionNotFound):
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
        if dns:
            return str(dns[0])
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else ""


def _identity(data: bytes) -> bytes:
    return data


class DaemonClient:
    """Keeps the daemon connected to one of ``gateways`` until stopped."""

    def __init__(
        self,
        host: ToolHost,
        gateways: list[Gateway],
        token: str,
        *,
        ca_file: str | None = None,
        daemon_id: str | None = None,
        version: str = "",
        on_state: Callable[[str, dict[str, Any]], None] | None = None,
        expected_user: str = "",
    ) -> None:
        """``expected_user``: the user id the token should belong to (``--user-id``, or the
        credentials file's); a gateway welcoming another user stops the daemon."""
        if not gateways:
            raise ValueError("no gateway to connect to")
        self.host = host
        self.gateways = gateways
        self.token = token
        self.ca_file = ca_file
        self.daemon_id = daemon_id or uuid.uuid4().hex
        self.version = version
        self.on_state = on_state or (lambda state, info: None)
        self.expected_user = expected_user
        self.connection: wire.Welcome | None = None
        self.connected = asyncio.Event()
        self.connects = 0

    def _hello(self) -> wire.Hello:
        return wire.Hello(
            daemon_id=self.daemon_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            version=self.version,
            platform=platform.platform(terse=True),
            tools=self.host.specs(),
            roots=[str(r) for r in self.host.policy.roots],
        )

    async def run(self, stop: asyncio.Event) -> str:
        """Stay connected until ``stop`` is set (returns "stopped") or the gateway says not
        to come back (raises :class:`DaemonStopped` with the reason)."""
        backoff = BACKOFF_START_S
        index = 0
        while not stop.is_set():
            gateway = self.gateways[index % len(self.gateways)]
            began = time.monotonic()
            try:
                await self._session(gateway, stop)
            except DaemonStopped:
                raise
            except Exception as exc:  # the stream broke: dial again (another gateway next)
                log.warning("gateway %s: %s", gateway.target, _describe(exc))
            finally:
                self.connected.clear()
                self.connection = None
            if stop.is_set():
                break
            if time.monotonic() - began > STABLE_AFTER_S:
                backoff = BACKOFF_START_S
            index += 1
            delay = random.uniform(0, backoff)  # full jitter: many daemons don't stampede
            self.on_state("reconnecting", {"in_s": round(delay, 2)})
            log.info("reconnecting in %.2fs", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        return "stopped"

    async def _session(self, gateway: Gateway, stop: asyncio.Event) -> None:
        channel = _channel(gateway, self.ca_file)
        outbox: asyncio.Queue[wire.DaemonFrame | None] = asyncio.Queue()

        async def frames() -> AsyncIterator[bytes]:
            yield wire.encode_frame(self._hello())
            while (frame := await outbox.get()) is not None:
                yield wire.encode_frame(frame)

        self.host.terminals.emit = outbox.put_nowait  # terminals' output goes on this stream
        method = channel.stream_stream(
            wire.CONNECT_METHOD, request_serializer=_identity, response_deserializer=_identity
        )
        call = method(frames(), metadata=(("authorization", f"Bearer {self.token}"),))

        async def stop_call() -> None:
            await stop.wait()
            call.cancel()

        # one task waits for the stop, so reading a frame is a plain await (no task per frame)
        stopper = asyncio.create_task(stop_call())
        try:
            reader = aiter(call)
            while True:
                try:
                    data = await anext(reader)
                except StopAsyncIteration:
                    raise ConnectionError("the gateway closed the stream") from None
                except asyncio.CancelledError:
                    if stop.is_set():
                        return  # stopped: the call was cancelled on purpose
                    raise
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.CANCELLED and stop.is_set():
                        return
                    if exc.code() in (
                        grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.PERMISSION_DENIED,
                    ):
                        raise DaemonStopped(
                            f"the gateway refused the daemon's token: {exc.details()} "
                            "(run `roost daemon register` for a new one)"
                        ) from None
                    raise
                frame = wire.decode_gateway_frame(data)
                if isinstance(frame, wire.Welcome):
                    if self.expected_user and frame.user != self.expected_user:
                        raise DaemonStopped(
                            f"the token belongs to user {frame.user}, not {self.expected_user} "
                            "(--user-id, or the credentials file): run `roost daemon register`"
                        )
                    self.connection = frame
                    self.connects += 1
                    self.connected.set()
                    self.on_state(
                        "connected", {"gateway": frame.gateway, "connection": frame.connection}
                    )
                    log.info(
                        "connected to gateway %s (%s) as %s",
                        frame.gateway,
                        gateway.target,
                        frame.user,
                    )
                elif isinstance(frame, wire.Call):
                    # the reply goes on this stream if it still stands; a call outlives it
                    # (the host keeps its result for a re-sent id through another gateway)
                    self.host.submit(frame, outbox.put_nowait)
                elif isinstance(frame, wire.TerminalInput):
                    self.host.terminals.input(frame)
                elif isinstance(frame, wire.Cancel):
                    await self.host.handle("", "tool.cancel", {"id": frame.id}, 5.0)
                elif isinstance(frame, wire.Beat):
                    outbox.put_nowait(wire.Beat())
                elif isinstance(frame, wire.Goodbye):
                    log.warning("gateway says goodbye (%s): %s", frame.kind, frame.reason)
                    self.on_state("goodbye", {"kind": frame.kind, "reason": frame.reason})
                    if not frame.reconnect:
                        raise DaemonStopped(frame.reason)
                    raise ConnectionError(f"gateway closed the stream: {frame.reason}")
        finally:
            self.host.terminals.emit = None
            outbox.put_nowait(None)
            stopper.cancel()
            await channel.close(grace=None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
