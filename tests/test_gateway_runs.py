"""A run uses its owner's tools daemon, end to end on loopback: real NATS, the API server
(running the agent), a tool worker (a separate platform serving only the tool service) and
two gateways; the daemon is connected to one of them with a daemon token made through the
API. The agent runs ``shell`` and a tool of a real MCP server (made with the ``mcp`` SDK) on
the daemon, its requests carrying the run's grant, which the gateways check; the daemon's
policy refuses what it denies; a user with no daemon gets a clear,
retryable error naming ``roost daemon start`` within the request timeout."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import make_agent, tools_toml
from api_helpers import Api, api_server, make_user
from gateway_helpers import RunningGateway, running_daemon, start_gateway
from roost.agents import pack_folder
from roost.auth import Authenticator, load_verifier, write_grant_keys
from roost.config import Settings
from roost.devservers.nats import NatsServer
from roost.gateway import daemon_authenticator
from roost.platform import Platform
from roost.platform._local import LOCAL_SERVICES
from roost.protocol import ErrorCode
from roost.stores import SqlPrincipalStore

pytestmark = pytest.mark.nats

MCP_SERVER = Path(__file__).parent / "fakes" / "mcp_server.py"
REQUEST_TIMEOUT_S = 6.0

ON_MY_LAPTOP = """
async def run(ctx, input):
    where = await ctx.tool("shell", command="pwd; echo $((6*7))")
    added = await ctx.tool("notes.add", a=2, b=40)
    refused = await ctx.call_tool("shell", {"command": "rm -rf precious"})
    return {
        "shell": where["output"].split(),
        "added": added["result"],
        "refused": [refused.is_error, refused.output],
    }
"""

TOOLS = 'services = ["tool"]\n' + tools_toml("shell", "notes.add")


def _settings(home: Path, nats: str, db: str, keys: tuple[Path, Path], **runtime: Any) -> Settings:
    """Settings of a platform process on the test's NATS and database; its runs sign their
    requests with the grant key and its services (the tool service too) check them."""
    private, public = keys
    return Settings(
        home=home,
        bus={
            "backend": "nats",
            "url": nats,
            "grant_key_file": private,
            "grant_public_key_file": public,
        },
        state={"url": db},
        workflows={"engine": "inprocess"},
        runtime=runtime,
        tools={"daemon": "gateway"},
    )


@contextlib.asynccontextmanager
async def _tool_worker(settings: Settings) -> AsyncIterator[Platform]:
    platform = await Platform.open(settings, start_services=False, runs=False)
    async with platform:
        await platform.start_services(["tool"])
        yield platform


async def _run(api: Api, token: str, agent: str) -> dict[str, Any]:
    async with api.client(token) as client:
        started = await client.post("/api/v1/runs", json={"agent": agent, "input": None})
        assert started.status_code in (200, 201, 202), started.text
        done = await client.get(f"/api/v1/runs/{started.json()['id']}/wait")
        assert done.status_code == 200, done.text
        return dict(done.json())


async def test_a_run_uses_its_owners_daemon_through_a_gateway(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'roost.db'}"
    keys = write_grant_keys(tmp_path / "grant-keys")
    api_settings = _settings(
        tmp_path / "api", nats_server.url, db, keys, request_timeout_s=REQUEST_TIMEOUT_S
    )
    services = [s for s in LOCAL_SERVICES if s != "tool"]
    gateways: list[RunningGateway] = []
    async with (
        api_server(tmp_path / "api", settings=api_settings, services=services) as api,
        _tool_worker(_settings(tmp_path / "worker", nats_server.url, db, keys)),
    ):
        assert api.platform.stores.db is not None
        authenticate = daemon_authenticator(
            Authenticator(SqlPrincipalStore(api.platform.stores.db))
        )
        grants = load_verifier(keys[1])  # the gateways serve a run only its owner's daemon
        for name in ("gw1", "gw2"):
            gateways.append(await start_gateway(nats_server.url, name, authenticate, grants=grants))
        try:
            erin, erin_token = await make_user(api, "erin")
            _, bob_token = await make_user(api, "bob")
            folder = make_agent(tmp_path / "agents", "laptop", ON_MY_LAPTOP, TOOLS, services=())
            for token in (erin_token, bob_token):
                async with api.client(token) as client:
                    deployed = await client.post(
                        "/api/v1/agents", content=pack_folder(folder),
                        headers={"Content-Type": "application/gzip"},
                    )  # fmt: skip
                    assert deployed.status_code == 201, deployed.text
            async with api.client(erin_token) as client:
                made = await client.post(
                    "/api/v1/tokens", json={"name": "laptop", "scopes": ["daemon"]}
                )
                assert made.status_code == 201, made.text
            daemon_token = made.json()["token"]
            work = tmp_path / "work"
            work.mkdir()
            mcp = {"notes": {"command": sys.executable, "args": [str(MCP_SERVER)]}}
            policy = f'roots = ["{work}"]\ndeny_commands = ["rm"]\n'
            async with running_daemon(
                tmp_path / "laptop", daemon_token, [g.address for g in gateways],
                policy=policy, mcp=mcp,
            ):  # fmt: skip
                done = await _run(api, erin_token, "laptop")
                assert done["ok"], done
                output = done["output"]
                assert output["shell"] == [str(work), "42"]
                assert output["added"] == 42
                assert output["refused"][0] is True
                assert "refused by the daemon's policy" in output["refused"][1]
                # bob has no daemon: his run fails fast, retryably, saying what to do
                began = time.monotonic()
                bobs = await _run(api, bob_token, "laptop")
                took = time.monotonic() - began
                assert not bobs["ok"]
                assert bobs["error"]["code"] == "unavailable", bobs
                assert ErrorCode(bobs["error"]["code"]).retryable
                assert "roost daemon start" in bobs["error"]["message"]
                assert took < REQUEST_TIMEOUT_S + 3, took
                assert [g.hub.holder(erin["id"]) is not None for g in gateways].count(True) == 1
        finally:
            for gateway in gateways:
                await gateway.stop()
