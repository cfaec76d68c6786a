"""An API server for tests: a local platform (in-process runs) behind a real uvicorn on
loopback, with agents deployed through the API itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agent_helpers import make_agent
from roost.agents import pack_folder
from roost.config import ServerConfig, Settings
from roost.platform import Platform
from roost.server import ApiServer

TOKEN = "test-admin-token-0123456789"

#: Emits two progress events, asks a question if told to, and returns what it got.
CHATTY = """
async def run(ctx, input):
    await ctx.emit("one", step=1)
    await ctx.emit("two", step=2)
    if isinstance(input, dict) and input.get("ask"):
        answer = await ctx.ask(input["ask"])
        return {"reply": f"you said {answer}"}
    text = input if isinstance(input, str) else (input or {}).get("prompt", "")
    return {"reply": f"echo: {text}"}
"""


@dataclass
class Api:
    server: ApiServer
    platform: Platform
    url: str
    health: str

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30.0)


@asynccontextmanager
async def api_server(
    home: Path,
    *,
    settings: Settings | None = None,
    services: Iterable[str] | None = None,
    **config: object,
) -> AsyncIterator[Api]:
    """An API server on loopback over a local platform (``settings``: in-process runs in
    ``home``); ``services`` narrows the services it serves on a NATS bus (default: all)."""
    settings = settings or Settings(home=home, workflows={"engine": "inprocess"})
    server_config = ServerConfig(
        bind_address="127.0.0.1", api_port=0, health_port=0, heartbeat_s=1.0, **config
    )
    platform = await Platform.open(settings, start_services=services is None)
    async with platform:
        if services is not None:
            await platform.start_services(services)
        server = ApiServer(platform, server_config, TOKEN)
        endpoints = await server.start()
        try:
            yield Api(server, platform, endpoints.api, endpoints.health)
        finally:
            await server.stop()


async def deploy(
    client: httpx.AsyncClient,
    root: Path,
    name: str,
    code: str = CHATTY,
    services: tuple[str, ...] = (),
) -> dict:
    folder = make_agent(root, name, code, services=services)
    reply = await client.post(
        "/api/v1/agents",
        content=pack_folder(folder),
        headers={"Content-Type": "application/gzip"},
        params={"source": str(folder)},
    )
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_user(
    api: Api,
    name: str,
    *,
    role: str = "member",
    scopes: list[str] | None = None,
    days: float = 1,
    tenant: str | None = None,
) -> tuple[dict[str, Any], str]:
    """A user made by the admin (in ``tenant``: omitted, the admin's), and a token of theirs."""
    async with api.client() as admin:
        fields: dict[str, Any] = {"name": name, "role": role}
        if tenant is not None:
            fields["tenant"] = tenant
        user = await admin.post("/api/v1/users", json=fields)
        assert user.status_code == 201, user.text
        body: dict[str, Any] = {"name": "test", "expires_in_days": days}
        if scopes is not None:
            body["scopes"] = scopes
        made = await admin.post(f"/api/v1/users/{user.json()['id']}/tokens", json=body)
        assert made.status_code == 201, made.text
        return user.json(), made.json()["token"]
