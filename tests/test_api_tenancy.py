"""Tenancy over a real uvicorn: two tenants' users share one server and never see, touch
or collide with each other's agents, runs, sessions, models or secrets. Another tenant's
thing answers exactly as a name nobody uses (404); lists leave it out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_helpers import COUNTER
from api_helpers import Api, api_server, bearer, deploy, make_user
from roost.protocol import tenants

ASKS = """
async def run(ctx, input):
    answer = await ctx.ask("ok?")
    return {"tenant": "acme", "answer": answer}
"""

ECHOES = """
async def run(ctx, input):
    return {"tenant": "beta", "input": input}
"""


@pytest.fixture
async def api(tmp_path: Path) -> Any:
    async with api_server(tmp_path / "home") as server:
        yield server


def client(api: Api, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=api.url, headers=bearer(token), timeout=30.0)


def names(reply: httpx.Response, key: str = "name") -> list[str]:
    assert reply.status_code == 200, reply.text
    body = reply.json()
    items = body["items"] if isinstance(body, dict) and "items" in body else body
    if isinstance(body, dict) and "data" in body:  # OpenAI's list shape
        items = body["data"]
    return sorted(item[key] for item in items)


async def test_another_tenants_runs_and_sessions_are_404(api: Api, tmp_path: Path) -> None:
    _, alice_token = await make_user(api, "alice", tenant="acme")
    _, bob_token = await make_user(api, "bob", tenant="beta")
    async with client(api, alice_token) as alice, client(api, bob_token) as bob:
        # the same agent name in both tenants: two agents, each runs its own code
        await deploy(alice, tmp_path / "a", "helper", ASKS)
        await deploy(bob, tmp_path / "b", "helper", ECHOES)
        run = (await alice.post("/api/v1/runs", json={"agent": "helper", "input": "x"})).json()
        run_id, session = run["id"], run["session"]
        assert tenants.SEPARATOR not in run_id  # the tenant's own names are unqualified
        assert (await alice.get(f"/api/v1/runs/{run_id}")).json()["agent"] == "helper"

        bob_run = (await bob.post("/api/v1/runs", json={"agent": "helper", "input": 1})).json()
        bob_done = (await bob.get(f"/api/v1/runs/{bob_run['id']}/wait")).json()
        assert bob_done["output"] == {"tenant": "beta", "input": 1}
        assert bob_done["run_id"] == bob_run["id"]  # the ids a tenant sees are its own

        refused = [
            ("GET", f"/api/v1/runs/{run_id}", {}),
            ("GET", f"/api/v1/runs/{run_id}/wait", {}),
            ("GET", f"/api/v1/runs/{run_id}/events", {}),
            ("POST", f"/api/v1/runs/{run_id}/answer", {"json": {"text": "hijacked"}}),
            ("POST", f"/api/v1/runs/{run_id}/cancel", {}),
            ("GET", f"/api/v1/sessions/{session}", {}),
            ("GET", f"/api/v1/sessions/{session}/nodes", {}),
            ("GET", f"/api/v1/sessions/{session}/branches", {}),
            ("POST", f"/api/v1/sessions/{session}/fork", {"json": {"from_node": "a"}}),
            ("POST", f"/api/v1/sessions/{session}/promote", {"json": {"branch": "main"}}),
            # continuing alice's session with bob's agent of the same name
            ("POST", "/api/v1/runs", {"json": {"agent": "helper", "session": session}}),
        ]
        for method, path, kwargs in refused:
            reply = await bob.request(method, path, **kwargs)
            assert reply.status_code == 404, (method, path, reply.text)
            assert "alice" not in reply.text and "acme" not in reply.text
        # lists leave the other tenant out
        assert run_id not in names(await bob.get("/api/v1/runs"), "id")
        assert session not in names(await bob.get("/api/v1/sessions"), "id")
        assert bob_run["id"] not in names(await alice.get("/api/v1/runs"), "id")
        # a qualified name is not a way in either
        for path in [f"/api/v1/runs/acme+{run_id}", "/api/v1/agents/acme+helper"]:
            assert (await bob.get(path)).status_code in (404, 422), path

        # alice's run was untouched: still waiting for her answer, which only she gives
        answered = await alice.post(f"/api/v1/runs/{run_id}/answer", json={"text": "yes"})
        assert answered.status_code == 200, answered.text
        done = (await alice.get(f"/api/v1/runs/{run_id}/wait")).json()
        assert done["ok"] and done["run_id"] == run_id, done
        assert done["output"] == {"tenant": "acme", "answer": "yes"}
        # and what she reads back names her things as she named them
        events = await alice.get(f"/api/v1/runs/{run_id}/events")
        nodes = await alice.get(f"/api/v1/sessions/{session}/nodes")
        for reply in (events, nodes, await alice.get("/api/v1/runs")):
            assert reply.status_code == 200 and "helper" in reply.text
            assert "acme+" not in reply.text, reply.text


async def test_agents_are_per_tenant(api: Api, tmp_path: Path) -> None:
    _, alice_token = await make_user(api, "alice", tenant="acme")
    _, bob_token = await make_user(api, "bob", tenant="beta")
    async with client(api, alice_token) as alice, client(api, bob_token) as bob:
        await deploy(alice, tmp_path / "a", "private", ASKS)
        await deploy(alice, tmp_path / "a", "helper", ASKS)
        await deploy(bob, tmp_path / "b", "helper", ECHOES)
        assert names(await alice.get("/api/v1/agents")) == ["helper", "private"]
        assert names(await bob.get("/api/v1/agents")) == ["helper"]
        async with api.client() as admin:  # the default tenant is a tenant like the others
            assert names(await admin.get("/api/v1/agents")) == []
        for path in [
            "/api/v1/agents/private",
            "/a2a/private/.well-known/agent-card.json",
        ]:
            reply = await bob.get(path)
            assert reply.status_code == 404, (path, reply.text)
        started = await bob.post("/api/v1/runs", json={"agent": "private", "input": "x"})
        assert started.status_code == 404
        assert "private" not in started.json()["error"]["message"].split("deployed:")[-1]
        assert (await bob.delete("/api/v1/agents/private")).status_code == 404
        chat = await bob.post(
            "/v1/chat/completions",
            json={"model": "private", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 404, chat.text
        assert names(await bob.get("/v1/models"), "id") == ["helper"]
        # bob deleting his helper leaves alice's
        assert (await bob.delete("/api/v1/agents/helper")).status_code == 204
        assert (await alice.get("/api/v1/agents/helper")).status_code == 200


@pytest.fixture
async def open_urls(tmp_path: Path) -> Any:
    """A server whose tenants may point models anywhere (here: at loopback)."""
    async with api_server(tmp_path / "open", tenant_model_urls="any") as server:
        yield server


async def test_a_tenants_model_cannot_point_into_the_private_network(api: Api) -> None:
    _, alice_token = await make_user(api, "alice", tenant="acme")
    model = {"name": "m", "engine": "openai", "target": "gpt"}
    async with client(api, alice_token) as alice:
        for url, why in [
            ("http://example.com/v1", "https URL"),
            ("https://127.0.0.1:8443/v1", "not a public address"),
            ("https://localhost/v1", "not a public address"),
            ("https://10.1.2.3/v1", "not a public address"),
            ("https://169.254.169.254/latest", "not a public address"),
            ("https://[::1]/v1", "not a public address"),
        ]:
            reply = await alice.post("/api/v1/models", json={**model, "base_url": url})
            assert reply.status_code == 400, (url, reply.text)
            assert why in reply.json()["error"]["message"], (url, reply.text)
        assert names(await alice.get("/api/v1/models")) == ["minilm", "smollm2"]
    async with api.client() as operator:  # the deployment's own admins may
        local = {**model, "base_url": "http://127.0.0.1:9/v1"}
        assert (await operator.post("/api/v1/models", json=local)).status_code == 201


async def test_models_and_secrets_are_per_tenant_and_shared_models_are_visible(
    open_urls: Api,
) -> None:
    api = open_urls
    _, alice_token = await make_user(api, "alice", tenant="acme")
    _, bob_token = await make_user(api, "bob", tenant="beta")
    remote = {"engine": "openai", "target": "gpt", "base_url": "http://127.0.0.1:9"}
    async with client(api, alice_token) as alice, client(api, bob_token) as bob:
        async with api.client() as operator:
            shared = await operator.post("/api/v1/models", json={"name": "shared", **remote})
            assert shared.status_code == 201, shared.text
        put = await alice.put("/api/v1/secrets/key", json={"value": "alice-s3cret"})
        assert put.status_code == 200, put.text
        mine = await alice.post(
            "/api/v1/models", json={"name": "mine", "api_key_secret": "key", **remote}
        )
        assert mine.status_code == 201, mine.text
        assert mine.json()["api_key_secret"] == "key"

        assert "mine" in names(await alice.get("/api/v1/models"))
        assert "shared" in names(await alice.get("/api/v1/models"))
        bobs = names(await bob.get("/api/v1/models"))
        assert "shared" in bobs and "mine" not in bobs
        # bob can neither remove alice's model nor the shared one
        assert (await bob.delete("/api/v1/models/mine")).status_code == 404
        assert (await bob.delete("/api/v1/models/shared")).status_code == 404
        # nor key a model with alice's secret: the name means his own secret (unset yet)
        keyed = await bob.post(
            "/api/v1/models", json={"name": "keyed", "api_key_secret": "key", **remote}
        )
        assert keyed.status_code == 201, keyed.text
        stored = {m.name: m for m in await api.platform.list_models()}
        assert stored["beta+keyed"].api_key_secret == "beta+key"
        assert stored["acme+mine"].api_key_secret == "acme+key"

        assert (await bob.get("/api/v1/secrets/key")).status_code == 404
        assert (await bob.delete("/api/v1/secrets/key")).status_code == 404
        assert (await alice.get("/api/v1/secrets/key")).status_code == 200
        # the same secret name in both tenants: two secrets
        assert (await bob.put("/api/v1/secrets/key", json={"value": "b"})).status_code == 200
        assert (await bob.delete("/api/v1/secrets/key")).status_code == 204
        assert (await alice.get("/api/v1/secrets/key")).status_code == 200
    assert await api.platform.secrets.get("acme+key") == "alice-s3cret"


async def test_tenant_admins_manage_only_their_tenant(api: Api) -> None:
    _, acme_admin = await make_user(api, "root-acme", role="admin", scopes=["admin"], tenant="acme")
    beta_user, _ = await make_user(api, "bob", tenant="beta")
    async with client(api, acme_admin) as admin:
        made = await admin.post("/api/v1/users", json={"name": "carol"})
        assert made.status_code == 201 and made.json()["tenant"] == "acme"
        other = await admin.post("/api/v1/users", json={"name": "eve", "tenant": "beta"})
        assert other.status_code == 403, other.text
        assert sorted(u["tenant"] for u in (await admin.get("/api/v1/users")).json()) == [
            "acme",
            "acme",
        ]
        token = await admin.post(
            f"/api/v1/users/{beta_user['id']}/tokens", json={"name": "x", "expires_in_days": 1}
        )
        assert token.status_code == 404
        assert (await admin.delete(f"/api/v1/users/{beta_user['id']}")).status_code == 404
        audit = (await admin.get("/api/v1/audit")).json()
        assert audit and {e["tenant"] for e in audit} == {"acme"}
    async with api.client() as operator:  # the deployment's admins see every tenant
        tenants_seen = {u["tenant"] for u in (await operator.get("/api/v1/users")).json()}
        assert {"acme", "beta"} <= tenants_seen
        reply = await operator.post("/api/v1/users", json={"name": "x", "tenant": "Not+One"})
        assert reply.status_code == 422


async def test_a_runs_calls_and_kv_stay_in_its_tenant(api: Api, tmp_path: Path) -> None:
    _, alice_token = await make_user(api, "alice", tenant="acme")
    _, bob_token = await make_user(api, "bob", tenant="beta")
    caller = "async def run(ctx, input):\n    return await ctx.call_agent('counter', None)\n"
    async with client(api, alice_token) as alice, client(api, bob_token) as bob:
        await deploy(alice, tmp_path / "a", "counter", COUNTER, services=("kv",))
        await deploy(alice, tmp_path / "a", "caller", caller, services=("agent",))
        await deploy(bob, tmp_path / "b", "counter", ECHOES)

        async def run(who: httpx.AsyncClient, agent: str, session: str | None = None) -> Any:
            body = {"agent": agent, "input": None, "session": session}
            started = (await who.post("/api/v1/runs", json=body)).json()
            done = (await who.get(f"/api/v1/runs/{started['id']}/wait")).json()
            assert done["ok"], done
            return done

        # alice's caller calls alice's counter, not bob's (which would echo its tenant)
        assert (await run(alice, "caller"))["output"] == 1
        # each tenant's counter keeps its own session KV
        first = await run(alice, "counter")
        assert (await run(alice, "counter", first["session"]))["output"] == 2
        assert (await run(bob, "counter"))["output"] == {"tenant": "beta", "input": None}


def test_names_are_qualified_into_their_tenant() -> None:
    assert tenants.qualify("default", "echo") == "echo"
    assert tenants.qualify("acme", "echo") == "acme+echo"
    assert tenants.tenant_of("acme+echo") == "acme"
    assert tenants.tenant_of("echo") == tenants.DEFAULT_TENANT
    assert tenants.local_name("acme", "acme+echo") == "echo"
    assert tenants.local_name("acme", "beta+echo") is None
    assert tenants.local_name("acme", "echo") is None
    assert tenants.local_name("default", "acme+echo") is None
    assert tenants.local_name("acme", "acme+") is None
    assert tenants.local_name("acme", "acme+x+y") is None
    assert tenants.visible_names("acme", "llama") == ["acme+llama", "llama"]
    assert tenants.visible_names("default", "llama") == ["llama"]
    assert tenants.visible_names("acme", "beta+llama") == []
    with pytest.raises(ValueError):
        tenants.qualify("Acme", "echo")
