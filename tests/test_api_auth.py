"""Authentication on the API over a real uvicorn: personal access tokens, scopes, roles,
revocation and expiry, rate limits, the audit log. Each case fails if its hole reopens."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_helpers import TOKEN, Api, api_server, bearer, deploy, make_user
from roost.auth import is_well_formed, mint_token, token_hash


@pytest.fixture
async def api(tmp_path: Path) -> Any:
    async with api_server(tmp_path / "home") as server:
        yield server


async def test_token_format_is_scannable_and_checksummed() -> None:
    token = mint_token()
    assert token.startswith("roost_pat_") and is_well_formed(token)
    # one changed character breaks the checksum: a typo is not even looked up
    broken = token[:-8] + ("A" if token[-8] != "A" else "B") + token[-7:]
    assert not is_well_formed(broken)
    assert not is_well_formed("roost_pat_short_abc")
    assert len({mint_token() for _ in range(100)}) == 100


async def test_no_token_or_a_bad_one_is_401_before_routing(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anon:
        for method, path in [
            ("GET", "/api/v1/agents"),
            ("DELETE", "/api/v1/runs"),  # no such method: still 401, not 405
            ("GET", "/api/v1/no-such-route"),  # still 401, not 404
            ("POST", "/api/v1/runs"),  # no body: still 401, not 422
            ("GET", "/v1/models"),
            ("GET", "/a2a/x/.well-known/agent-card.json"),
        ]:
            reply = await anon.request(method, path)
            assert reply.status_code == 401, (method, path, reply.text)
            assert reply.headers["www-authenticate"] == "Bearer"
        for token in ["nonsense", mint_token(), "roost_pat_" + "x" * 40, TOKEN + "x"]:
            reply = await anon.get("/api/v1/me", headers=bearer(token))
            assert reply.status_code == 401, token
            assert reply.json()["error"]["message"].startswith("invalid token")
        docs = await anon.get("/openapi.json")  # the API's description is public
        assert docs.status_code == 200


async def test_a_users_token_works_and_says_who(api: Api) -> None:
    user, token = await make_user(api, "alice")
    async with httpx.AsyncClient(base_url=api.url, headers=bearer(token)) as alice:
        me = (await alice.get("/api/v1/me")).json()
        assert me["id"] == user["id"] and me["name"] == "alice" and me["role"] == "member"
        assert (await alice.get("/api/v1/agents")).status_code == 200
        tokens = (await alice.get("/api/v1/tokens")).json()
        assert [t["name"] for t in tokens] == ["test"]
        assert "token" not in tokens[0] and tokens[0]["last_used_at"] is not None


async def test_revoked_token_is_401_at_once(api: Api) -> None:
    _, token = await make_user(api, "bob")
    async with httpx.AsyncClient(base_url=api.url, headers=bearer(token)) as bob:
        assert (await bob.get("/api/v1/me")).status_code == 200  # now cached
        token_id = (await bob.get("/api/v1/me")).json()["token_id"]
        assert (await bob.delete(f"/api/v1/tokens/{token_id}")).status_code == 204
        assert (await bob.get("/api/v1/me")).status_code == 401


async def test_expired_token_is_401_even_while_cached(api: Api) -> None:
    _, token = await make_user(api, "carol", days=1.5 / 86400)  # 1.5 s
    async with httpx.AsyncClient(base_url=api.url, headers=bearer(token)) as carol:
        assert (await carol.get("/api/v1/me")).status_code == 200
        await asyncio.sleep(1.8)
        assert (await carol.get("/api/v1/me")).status_code == 401


async def test_a_token_without_the_scope_is_403(api: Api, tmp_path: Path) -> None:
    async with api.client() as admin:
        await deploy(admin, tmp_path, "echo")
    _, token = await make_user(api, "dave", scopes=["read"])
    async with httpx.AsyncClient(base_url=api.url, headers=bearer(token)) as dave:
        assert (await dave.get("/api/v1/agents")).status_code == 200
        started = await dave.post("/api/v1/runs", json={"agent": "echo", "input": "hi"})
        assert started.status_code == 403 and "runs:write" in started.text
        assert (await dave.put("/api/v1/secrets/k", json={"value": "v"})).status_code == 403
        assert (await dave.delete("/api/v1/agents/echo")).status_code == 403
        chat = await dave.post("/v1/chat/completions", json={"model": "echo", "messages": []})
        assert chat.status_code == 403
        # and it cannot mint itself a stronger token
        made = await dave.post("/api/v1/tokens", json={"name": "x", "scopes": ["runs:write"]})
        assert made.status_code == 403


async def test_a_daemon_token_reads_nothing(api: Api) -> None:
    _, token = await make_user(api, "erin", scopes=["daemon"])
    async with httpx.AsyncClient(base_url=api.url, headers=bearer(token)) as erin:
        assert (await erin.get("/api/v1/agents")).status_code == 403
        assert (await erin.get("/api/v1/runs")).status_code == 403


async def test_members_are_refused_admin_routes(api: Api) -> None:
    _, token = await make_user(api, "frank", scopes=["read", "tokens:write"])
    async with httpx.AsyncClient(base_url=api.url, headers=bearer(token)) as frank:
        for method, path in [
            ("GET", "/api/v1/users"),
            ("POST", "/api/v1/users"),
            ("GET", "/api/v1/audit"),
            ("DELETE", "/api/v1/users/u_00"),
        ]:
            reply = await frank.request(method, path, json={"name": "x"})
            assert reply.status_code == 403, (method, path, reply.text)
    # an admin user's everyday token (without the admin scope) is refused too
    _, everyday = await make_user(api, "grace", role="admin", scopes=["read"])
    async with httpx.AsyncClient(base_url=api.url, headers=bearer(everyday)) as grace:
        assert (await grace.get("/api/v1/users")).status_code == 403


async def test_one_user_cannot_revoke_anothers_token(api: Api) -> None:
    _, heidi = await make_user(api, "heidi")
    _, ivan = await make_user(api, "ivan")
    async with (
        httpx.AsyncClient(base_url=api.url, headers=bearer(heidi)) as h,
        httpx.AsyncClient(base_url=api.url, headers=bearer(ivan)) as i,
    ):
        ivans = (await i.get("/api/v1/me")).json()["token_id"]
        assert (await h.delete(f"/api/v1/tokens/{ivans}")).status_code == 404
        assert (await i.get("/api/v1/me")).status_code == 200


async def test_a_disabled_user_is_401(api: Api) -> None:
    user, token = await make_user(api, "judy")
    async with (
        httpx.AsyncClient(base_url=api.url, headers=bearer(token)) as judy,
        api.client() as admin,
    ):
        assert (await judy.get("/api/v1/me")).status_code == 200
        assert (await admin.delete(f"/api/v1/users/{user['id']}")).status_code == 204
        assert (await judy.get("/api/v1/me")).status_code == 401


async def test_a_token_is_not_recoverable_from_the_database(api: Api, tmp_path: Path) -> None:
    _, token = await make_user(api, "mallory")
    random_part = token.removeprefix("roost_pat_").rsplit("_", 1)[0]
    files = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert random_part.encode() not in data, path
    database = next(p for p in files if p.name.endswith(".db"))
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT hash, prefix FROM access_tokens").fetchall()
    assert (token_hash(token), token[:16]) in rows


async def test_per_token_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    async with (
        api_server(tmp_path / "home", rate_limit_per_s=0.5, rate_limit_burst=3) as api,
        api.client() as admin,
    ):
        codes = [(await admin.get("/api/v1/agents")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = await admin.get("/api/v1/agents")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"


async def test_the_audit_log_records_who_did_what(api: Api, tmp_path: Path) -> None:
    _, token = await make_user(api, "oscar")
    async with (
        httpx.AsyncClient(base_url=api.url, headers=bearer(token)) as oscar,
        api.client() as admin,
    ):
        await deploy(oscar, tmp_path, "echo")
        assert (await oscar.put("/api/v1/secrets/k", json={"value": "v"})).status_code == 200
        await oscar.post("/api/v1/auth/login")
        await admin.get("/api/v1/me", headers=bearer(mint_token()))  # a failed login
        events = (await admin.get("/api/v1/audit")).json()
    actions = {e["action"] for e in events}
    assert {"user.create", "token.create", "agent.deploy", "secret.put", "auth.login"} <= actions
    assert "auth.failed" in actions
    failed = next(e for e in events if e["action"] == "auth.failed")
    assert failed["ok"] is False and failed["target"] == "/api/v1/me"
    assert all(e["detail"].get("value") != "v" for e in events)  # no secret values
