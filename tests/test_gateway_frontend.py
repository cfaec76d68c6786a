"""The gateway's frontend proxy as a browser's backend uses it: two real gateways
(``serve_gateway``, as ``roost server gateway`` runs it) on real NATS and the database, the
daemon connected to the first, the user's requests sent to the *second*, so each goes
through NATS to the gateway holding the daemon. Files, processes and status over gRPC; a
terminal over a WebSocket, echoing through a real PTY; and nobody reaches a daemon but
their own."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import websockets

from gateway_helpers import running_daemon
from roost.auth import DEFAULT_SCOPES, Authenticator
from roost.config import Settings
from roost.devservers.nats import NatsServer
from roost.gateway import FRONTEND_SERVICE
from roost.server import serve_gateway
from roost.stores import SqlPrincipalStore, open_stores
from roost.toolsd import Gateway

pytestmark = pytest.mark.nats


@dataclass
class Tokens:
    erin: str  # the default scopes (machine:write among them)
    erin_daemon: str  # the daemon scope only
    erin_reader: str  # read only
    mallory: str  # another user, with no daemon


async def _users(db_url: str, home: Path) -> Tokens:
    stores = await open_stores(db_url, home)
    try:
        assert stores.db is not None
        store = SqlPrincipalStore(stores.db)
        auth = Authenticator(store)
        erin = await store.create_user("erin")
        mallory = await store.create_user("mallory")

        async def token(user: str, scopes: tuple[str, ...] = DEFAULT_SCOPES) -> str:
            return (await auth.issue(user, "t", scopes=scopes, ttl_s=3600))[0]

        return Tokens(
            erin=await token(erin.id),
            erin_daemon=await token(erin.id, ("daemon",)),
            erin_reader=await token(erin.id, ("read",)),
            mallory=await token(mallory.id),
        )
    finally:
        await stores.close()


@dataclass
class RunningGatewayProcess:
    daemons: Gateway
    frontend: str
    terminals: str


@contextlib.asynccontextmanager
async def _gateway(settings: Settings) -> AsyncIterator[RunningGatewayProcess]:
    lines: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(serve_gateway(settings, announce=lines.put_nowait))
    try:
        line = await asyncio.wait_for(lines.get(), 60)
        found = re.search(
            r"daemons on ([\d.:]+) .*frontend proxy on ([\d.:]+);.*terminals on (\S+)", line
        )
        assert found, line
        yield RunningGatewayProcess(
            Gateway.parse(f"http://{found.group(1)}"), found.group(2), found.group(3)
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _call(address: str, token: str | None, op: str, body: dict[str, Any]) -> Any:
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.unary_unary(f"/{FRONTEND_SERVICE}/Call")
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        data = await method(json.dumps({"op": op, "body": body}).encode(), metadata=metadata)
        return json.loads(data)


async def _refused(
    address: str, token: str | None, op: str, body: dict[str, Any]
) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(address, token, op, body)
    return caught.value.code()


async def _grpc_terminal(address: str, token: str, keys: bytes) -> bytes:
    """Open a terminal over ``Frontend/Terminal``, type ``keys``, hang up: what it showed."""
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.stream_stream(f"/{FRONTEND_SERVICE}/Terminal")
        inputs: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[bytes]:
            while (message := await inputs.get()) is not None:
                yield message

        call = method(requests(), metadata=(("authorization", f"Bearer {token}"),))
        inputs.put_nowait(json.dumps({"rows": 24, "cols": 80}).encode())
        replies = aiter(call)
        assert "terminal" in json.loads(await anext(replies))
        inputs.put_nowait(json.dumps({"data": base64.b64encode(keys).decode()}).encode())
        inputs.put_nowait(json.dumps({"data": base64.b64encode(b"exit\n").decode()}).encode())
        seen = b""
        async for reply in replies:
            message = json.loads(reply)
            if message.get("closed"):
                break
            seen += base64.b64decode(message.get("data", ""))
        inputs.put_nowait(None)
        return seen


async def test_a_users_browser_reaches_their_own_machine_through_any_gateway(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'roost.db'}"
    tokens = await _users(db_url, tmp_path / "home")

    def settings(name: str) -> Settings:
        return Settings(
            home=tmp_path / name,
            state={"url": db_url},
            bus={"backend": "nats", "url": nats_server.url},
            server={"bind_address": "127.0.0.1", "gateway_port": 0,
                    "gateway_frontend_port": 0, "gateway_health_port": 0},
        )  # fmt: skip

    work = tmp_path / "work"
    work.mkdir()
    async with (
        _gateway(settings("gw-a")) as holder,
        _gateway(settings("gw-b")) as other,
        running_daemon(
            tmp_path / "laptop", tokens.erin_daemon, [holder.daemons],
            policy=f'roots = ["{work}"]\n',
        ),
    ):  # fmt: skip
        front = other.frontend  # not the gateway holding the daemon: through NATS
        status = await _call(front, tokens.erin, "status", {})
        assert status["roots"] == [str(work)]
        await _call(front, tokens.erin, "fs.write", {"path": "notes.md", "content": "hi\n"})
        read = await _call(front, tokens.erin_reader, "fs.read", {"path": "notes.md"})
        assert read["output"]["content"] == "hi\n"
        listed = await _call(front, tokens.erin, "fs.list", {"path": "."})
        assert [e["path"] for e in listed["output"]["entries"]] == ["notes.md"]
        started = await _call(front, tokens.erin, "process.start", {"command": "sleep 30"})
        process = started["output"]["id"]
        running = await _call(front, tokens.erin, "process.list", {})
        assert [p["id"] for p in running["output"]["processes"]] == [process]
        await _call(front, tokens.erin, "process.kill", {"id": process})
        # the daemon's roots and policy hold for the browser too
        outside = await _refused(front, tokens.erin, "fs.read", {"path": "/etc/passwd"})
        assert outside == grpc.StatusCode.INVALID_ARGUMENT
        # not signed in, a daemon-only token, a read-only token writing: refused
        assert await _refused(front, None, "status", {}) == grpc.StatusCode.UNAUTHENTICATED
        assert await _refused(front, "roost_pat_nonsense", "status", {}) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        assert await _refused(front, tokens.erin_daemon, "status", {}) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert (
            await _refused(front, tokens.erin_reader, "fs.write", {"path": "x", "content": "no"})
            == grpc.StatusCode.PERMISSION_DENIED
        )
        # another user reaches only their own daemon, which is not there
        assert await _refused(front, tokens.mallory, "fs.list", {"path": "."}) == (
            grpc.StatusCode.UNAVAILABLE
        )
        assert await _refused(front, tokens.erin, "terminal.open", {}) == (
            grpc.StatusCode.UNAUTHENTICATED  # not a frontend operation
        )

        # a terminal over a WebSocket, echoing through a real PTY on the daemon
        async with websockets.connect(other.terminals) as ws:
            await ws.send(json.dumps({"token": tokens.erin, "rows": 30, "cols": 100}))
            opened = json.loads(await ws.recv())
            assert opened["cwd"] == str(work), opened
            await ws.send(b"echo pty-$((6*7)); stty size\n")
            seen = b""
            while b"pty-42" not in seen or b"30 100" not in seen:
                message = await asyncio.wait_for(ws.recv(), 15)
                assert isinstance(message, bytes), message
                seen += message
            await ws.send(json.dumps({"resize": [40, 120]}))
            await ws.send(b"stty size; exit 7\n")
            while True:
                message = await asyncio.wait_for(ws.recv(), 15)
                if isinstance(message, str):
                    assert json.loads(message) == {"closed": True, "exit_code": 7}
                    break
                seen += message
            assert b"40 120" in seen
        # and over the gRPC stream
        assert b"grpc-5" in await _grpc_terminal(front, tokens.erin, b"echo grpc-$((2+3))\n")
        # a terminal for someone without a daemon, or not signed in: refused, closed
        for token, close in (
            (tokens.mallory, 4404),
            ("nope", 4401),
            (tokens.erin_reader, 4403),
        ):
            async with websockets.connect(other.terminals) as ws:
                await ws.send(json.dumps({"token": token}))
                assert "error" in json.loads(await ws.recv())
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == close
