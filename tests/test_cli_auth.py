"""``roost server init``, ``roost auth`` and ``roost token``: real ``roost`` subprocesses
against an in-process API server on loopback, each with a ROOST_HOME of its own and its
client.toml in ROOST_CLIENT_CONFIG.

The API server runs in the test's event loop, so every CLI subprocess runs in a thread."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api_helpers import TOKEN, Api, api_server
from cli_helpers import ROOT, cli_env, ok, one_line_error
from roost.auth import is_well_formed, mint_token

pytestmark = pytest.mark.e2e


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with api_server(tmp_path / "server") as server:
        yield server


def client_env(tmp_path: Path) -> dict[str, str]:
    """A CLI on its own home whose client.toml is ``tmp_path/config/client.toml``."""
    return cli_env(
        tmp_path / "client", ROOST_CLIENT_CONFIG=str(tmp_path / "config" / "client.toml")
    )


async def roost(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``roost ARGS`` in a subprocess (``stdin``: piped to it), in a thread: the server in
    this loop keeps serving."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "roost", *args],
        env=env,
        cwd=ROOT,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=90,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def me(api: Api, token: str) -> tuple[int, dict]:
    async with api.client(token) as client:
        reply = await client.get("/api/v1/me")
    return reply.status_code, reply.json()


async def init_admin(api: Api, env: dict[str, str], *args: str) -> str:
    """``roost server init`` on the test server's database; the token it printed."""
    home = api.platform.settings.home
    proc = await roost(env, "server", "init", "--data-dir", str(home), *args)
    [token] = ok(proc).splitlines()  # the token alone: TOKEN=$(roost server init) works
    return token


async def test_server_init_makes_the_first_admin_once(api: Api, tmp_path: Path) -> None:
    env = client_env(tmp_path)
    home = api.platform.settings.home
    proc = await roost(env, "server", "init", "--data-dir", str(home), "--email", "ops@example.com")
    [token] = ok(proc).splitlines()
    assert is_well_formed(token)
    assert "shown once" in proc.stderr and "roost auth login --url" in proc.stderr
    assert token not in proc.stderr

    status, found = await me(api, token)
    assert status == 200, found
    assert (found["name"], found["role"], found["tenant"]) == ("admin", "admin", "default")
    assert found["scopes"] == ["admin"]

    async with api.client() as client:  # the static admin token reads users and the audit
        [user] = (await client.get("/api/v1/users")).json()
        events = (await client.get("/api/v1/audit")).json()
    assert (user["id"], user["email"], user["role"]) == (found["id"], "ops@example.com", "admin")
    actions = {e["action"]: e for e in events}
    assert actions["user.create"]["actor"] == user["id"]
    assert actions["user.create"]["target"] == user["id"]
    assert actions["token.create"]["actor"] == user["id"]
    assert actions["token.create"]["target"] == found["token_id"]

    again = await roost(env, "server", "init", "--data-dir", str(home), "--name", "other")
    message = one_line_error(again)
    assert "already initialised" in message and "roost token create" in message
    assert again.stdout == ""
    async with api.client() as client:
        assert len((await client.get("/api/v1/users")).json()) == 1


async def test_login_then_create_list_and_revoke_tokens(api: Api, tmp_path: Path) -> None:
    env = client_env(tmp_path)
    admin = await init_admin(api, env)
    config = tmp_path / "config" / "client.toml"
    config.parent.mkdir()
    config.write_text('# my settings\ntimeout_s = 30\ntoken = "an-old-token"\n')

    # the token on stdin, not on the command line
    proc = await roost(env, "auth", "login", "--url", api.url, stdin=admin + "\n")
    assert f"logged in to {api.url} as admin (tenant default, scopes admin)" in ok(proc)
    saved = tmp_path / "client" / "credentials" / "api-token"
    assert saved.read_text().strip() == admin
    assert mode(saved) == 0o600 and mode(saved.parent) == 0o700
    assert mode(config) == 0o600
    text = config.read_text()
    assert "# my settings" in text  # the rest of the file is kept
    assert tomllib.loads(text) == {"timeout_s": 30, "api_url": api.url, "token_file": str(saved)}

    shown, as_json = map(
        ok,
        await asyncio.gather(roost(env, "auth", "whoami"), roost(env, "auth", "whoami", "--json")),
    )
    assert "admin" in shown and "tenant default" in shown and api.url in shown
    assert json.loads(as_json)["role"] == "admin"

    # create: the token alone on stdout, its record on stderr
    proc = await roost(
        env, "token", "create", "ci", "--scope", "read", "--scope", "runs:write",
        "--expires-in-days", "7",
    )  # fmt: skip
    [ci] = ok(proc).splitlines()
    assert is_well_formed(ci)
    status, found = await me(api, ci)
    assert status == 200 and found["scopes"] == ["read", "runs:write"]
    assert found["token_id"] in proc.stderr and "'ci'" in proc.stderr and ci not in proc.stderr
    ci_id = found["token_id"]

    made = json.loads(ok(await roost(env, "token", "create", "laptop", "--json")))
    assert is_well_formed(made["token"]) and made["name"] == "laptop"
    assert made["id"].startswith("tok_") and "tokens:write" in made["scopes"]
    assert "unknown scope 'nope'" in one_line_error(
        await roost(env, "token", "create", "x", "--scope", "nope")
    )

    listed = json.loads(ok(await roost(env, "token", "list", "--json")))
    states = {t["name"]: t["state"] for t in listed}
    assert states == {"roost server init": "active", "ci": "active", "laptop": "active"}
    assert all("token" not in t for t in listed)  # never the tokens themselves
    table = ok(await roost(env, "token", "list"))
    assert ci_id in table and "read runs:write" in table and "active" in table

    # revoke: the token stops working at once (revoked through this server process)
    assert f"revoked {ci_id}" in ok(await roost(env, "token", "revoke", ci_id))
    status, found = await me(api, ci)
    assert status == 401, found
    listed = json.loads(ok(await roost(env, "token", "list", "--json")))
    assert {t["id"]: t["state"] for t in listed}[ci_id] == "revoked"
    assert "revoked" in ok(await roost(env, "token", "list"))
    assert "no token" in one_line_error(await roost(env, "token", "revoke", "tok_0123456789abcdef"))

    # logout: the token file and the login keys go, the other settings stay
    assert f"logged out of {api.url}" in ok(await roost(env, "auth", "logout"))
    assert not saved.exists()
    assert tomllib.loads(config.read_text()) == {"timeout_s": 30}
    message = one_line_error(await roost(env, "token", "list"))
    assert "roost auth login --url" in message
    status, _ = await me(api, admin)
    assert status == 200  # logging out does not revoke


async def test_login_with_a_wrong_token_fails_and_writes_nothing(api: Api, tmp_path: Path) -> None:
    env = client_env(tmp_path)
    config = tmp_path / "config" / "client.toml"
    saved = tmp_path / "client" / "credentials" / "api-token"
    for wrong in (mint_token(), "not-a-token"):
        proc = await roost(env, "auth", "login", "--url", api.url, "--token", wrong)
        message = one_line_error(proc)
        assert f"{api.url} refused the token" in message
        assert proc.stdout == ""
        assert not config.exists() and not saved.exists() and not saved.parent.exists()

    # nothing configured: the API commands say how to log in
    for args in (("token", "list"), ("token", "create", "x"), ("auth", "whoami")):
        assert "roost auth login --url" in one_line_error(await roost(env, *args))

    # the static admin token logs in, but is no user to make tokens for
    ok(await roost(env, "auth", "login", "--url", api.url, "--token", TOKEN))
    assert "roost server init" in one_line_error(await roost(env, "token", "create", "x"))
