"""The API server over a real uvicorn on loopback: REST routes, SSE with resume, the OpenAI
endpoint with the official client, errors and limits, and that an outsider is refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_helpers import TOKEN, Api, api_server, deploy
from roost.config import ServerConfig


@pytest.fixture
async def api(tmp_path: Path) -> Any:
    async with api_server(tmp_path / "home") as server:
        yield server


async def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    """The events of a server-sent stream: ``{"id", "event", "data"}`` each."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in current:
                events.append(current)
            current = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            current[field] = value[1:] if value.startswith(" ") else value
    return events


# --- agents -----------------------------------------------------------------------------


async def test_deploy_list_get_delete_agents(api: Api, tmp_path: Path) -> None:
    async with api.client() as client:
        agent = await deploy(client, tmp_path, "chatty")
        assert (agent["name"], agent["version"], agent["runtime"]) == ("chatty", 1, "python")
        again = await deploy(client, tmp_path / "v2", "chatty")
        assert again["version"] == 2
        listed = (await client.get("/api/v1/agents")).json()
        assert [a["name"] for a in listed["items"]] == ["chatty"]
        assert listed["next"] is None
        assert (await client.get("/api/v1/agents/chatty")).json()["version"] == 2
        assert (await client.delete("/api/v1/agents/chatty")).status_code == 204
        gone = await client.get("/api/v1/agents/chatty")
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "not_found"


async def test_a_bad_bundle_or_manifest_is_a_clear_400(api: Api, tmp_path: Path) -> None:
    async with api.client() as client:
        garbage = await client.post(
            "/api/v1/agents", content=b"not a tarball", headers={"Content-Type": "application/gzip"}
        )
        assert garbage.status_code == 400
        assert "bundle" in garbage.json()["error"]["message"]
        wrong_type = await client.post("/api/v1/agents", json={"x": 1})
        assert wrong_type.status_code == 415
        from agent_helpers import write_agent
        from roost.agents import pack_folder

        folder = write_agent(tmp_path / "bad", {"agent.toml": 'name = "bad"\nruntime = "nope"\n'})
        bad = await client.post(
            "/api/v1/agents",
            content=pack_folder(folder),
            headers={"Content-Type": "application/gzip"},
            params={"source": "my-folder"},
        )
        assert bad.status_code == 400
        message = bad.json()["error"]["message"]
        assert "my-folder" in message and "runtime" in message


# --- runs -------------------------------------------------------------------------------


async def test_start_wait_get_and_list_runs(api: Api, tmp_path: Path) -> None:
    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")
        started = await client.post("/api/v1/runs", json={"agent": "chatty", "input": "hi"})
        assert started.status_code == 202, started.text
        run = started.json()
        done = (await client.get(f"/api/v1/runs/{run['id']}/wait")).json()
        assert done["ok"] is True
        assert done["output"] == {"reply": "echo: hi"}
        assert done["session"] == run["session"]
        info = (await client.get(f"/api/v1/runs/{run['id']}")).json()
        assert info["status"] == "completed"
        # the same run id is the same run: starting it again starts nothing
        again = await client.post(
            "/api/v1/runs", json={"agent": "chatty", "input": "x", "run_id": run["id"]}
        )
        assert again.json()["id"] == run["id"]
        second = (await client.post("/api/v1/runs", json={"agent": "chatty", "input": "b"})).json()
        await client.get(f"/api/v1/runs/{second['id']}/wait")
        page = (await client.get("/api/v1/runs", params={"limit": 1})).json()
        assert [r["id"] for r in page["items"]] == [second["id"]]
        rest = (await client.get("/api/v1/runs", params={"cursor": page["next"]})).json()
        assert [r["id"] for r in rest["items"]] == [run["id"]]
        completed = (await client.get("/api/v1/runs", params={"status": "failed"})).json()
        assert completed["items"] == []


async def test_a_question_is_answered_through_the_api(api: Api, tmp_path: Path) -> None:
    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")
        run = (
            await client.post("/api/v1/runs", json={"agent": "chatty", "input": {"ask": "name?"}})
        ).json()
        for _ in range(100):
            info = (await client.get(f"/api/v1/runs/{run['id']}")).json()
            if info["question"]:
                break
            await asyncio.sleep(0.05)
        assert info["question"] == "name?"
        answered = await client.post(f"/api/v1/runs/{run['id']}/answer", json={"text": "Ada"})
        assert answered.status_code == 200, answered.text
        done = (await client.get(f"/api/v1/runs/{run['id']}/wait")).json()
        assert done["output"] == {"reply": "you said Ada"}


async def test_cancel_a_run(api: Api, tmp_path: Path) -> None:
    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")
        run = (
            await client.post("/api/v1/runs", json={"agent": "chatty", "input": {"ask": "wait"}})
        ).json()
        cancelled = await client.post(f"/api/v1/runs/{run['id']}/cancel")
        assert cancelled.status_code == 202
        done = (await client.get(f"/api/v1/runs/{run['id']}/wait")).json()
        assert done["ok"] is False
        assert done["error"]["code"] == "cancelled"


async def test_a_runs_events_stream_and_resume_without_gap_or_duplicate(
    api: Api, tmp_path: Path
) -> None:
    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")
        run = (
            await client.post("/api/v1/runs", json={"agent": "chatty", "input": {"ask": "ok?"}})
        ).json()
        url = f"/api/v1/runs/{run['id']}/events"
        seen: list[dict[str, Any]] = []
        async with client.stream("GET", url) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    seen.append({"id": line[3:].strip()})
                if line.startswith("event:") and seen:
                    seen[-1]["event"] = line[6:].strip()
                if len(seen) == 2 and "event" in seen[-1]:
                    break  # the client goes away mid-run, after two events
        assert [e["event"] for e in seen] == ["progress", "progress"]
        await client.post(f"/api/v1/runs/{run['id']}/answer", json={"text": "yes"})
        headers = {"Last-Event-ID": seen[-1]["id"]}
        async with client.stream("GET", url, headers=headers) as response:
            rest = await sse_events(response)
        kinds = [e["event"] for e in rest]
        assert kinds[-1] == "complete"
        assert "question" in kinds and "answer" in kinds
        ids = [e["id"] for e in seen] + [e["id"] for e in rest if "id" in e]
        assert len(ids) == len(set(ids)), "an event was sent twice"
        final = json.loads(rest[-1]["data"])
        assert final["output"] == {"reply": "you said yes"}
        # a client that comes after the end gets the whole run from the DAG
        async with client.stream("GET", url) as response:
            replay = await sse_events(response)
        assert [e["id"] for e in replay] == ids


async def test_events_of_an_unknown_run_are_a_404(api: Api) -> None:
    async with api.client() as client:
        reply = await client.get("/api/v1/runs/nope/events")
        assert reply.status_code == 404
        assert reply.json()["error"]["code"] == "not_found"


# --- sessions, models, secrets ------------------------------------------------------------


async def test_sessions_nodes_fork_and_promote(api: Api, tmp_path: Path) -> None:
    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")
        run = (await client.post("/api/v1/runs", json={"agent": "chatty", "input": "a"})).json()
        await client.get(f"/api/v1/runs/{run['id']}/wait")
        sessions = (await client.get("/api/v1/sessions", params={"agent": "chatty"})).json()
        assert [s["id"] for s in sessions["items"]] == [run["session"]]
        session = (await client.get(f"/api/v1/sessions/{run['session']}")).json()
        nodes = (await client.get(f"/api/v1/sessions/{session['name']}/nodes")).json()["items"]
        assert nodes[0]["kind"] == "invoke" and nodes[-1]["kind"] == "complete"
        after = (
            await client.get(
                f"/api/v1/sessions/{session['id']}/nodes", params={"after": nodes[0]["seq"]}
            )
        ).json()["items"]
        assert [n["id"] for n in after] == [n["id"] for n in nodes[1:]]
        forked = await client.post(
            f"/api/v1/sessions/{session['id']}/fork",
            json={"from_node": nodes[0]["id"][:12], "branch": "alt"},
        )
        assert forked.status_code == 201, forked.text
        assert forked.json()["name"] == "alt"
        branches = (await client.get(f"/api/v1/sessions/{session['id']}/branches")).json()
        assert sorted(b["name"] for b in branches) == ["alt", "main"]
        promoted = await client.post(
            f"/api/v1/sessions/{session['id']}/promote", json={"branch": "alt"}
        )
        assert promoted.json()["main_branch"] == "alt"


async def test_models_and_secrets(api: Api) -> None:
    async with api.client() as client:
        added = await client.post(
            "/api/v1/models",
            json={"name": "remote", "engine": "openai", "target": "gpt", "base_url": "http://x"},
        )
        assert added.status_code == 201, added.text
        names = [m["name"] for m in (await client.get("/api/v1/models")).json()["items"]]
        assert "remote" in names
        bad = await client.post(
            "/api/v1/models", json={"name": "r2", "engine": "openai", "target": "gpt"}
        )
        assert bad.status_code == 400 and "base-url" in bad.json()["error"]["message"]
        assert (await client.delete("/api/v1/models/remote")).status_code == 204
        assert (await client.delete("/api/v1/models/remote")).status_code == 404

        put = await client.put("/api/v1/secrets/api-key", json={"value": "s3cret"})
        assert put.json() == {"name": "api-key", "exists": True}
        got = await client.get("/api/v1/secrets/api-key")
        assert got.json() == {"name": "api-key", "exists": True}
        assert "s3cret" not in got.text
        assert (await client.delete("/api/v1/secrets/api-key")).status_code == 204
        assert (await client.get("/api/v1/secrets/api-key")).status_code == 404


# --- errors, limits, auth -------------------------------------------------------------------


async def test_bad_input_gets_clear_4xx_and_never_500(api: Api, tmp_path: Path) -> None:
    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")
        cases = [
            ("POST", "/api/v1/runs", {"content": b"{not json"}, 422),
            ("POST", "/api/v1/runs", {"json": {"agent": 5}}, 422),
            ("POST", "/api/v1/runs", {"json": {"agent": "ghost"}}, 404),
            ("POST", "/api/v1/runs", {"json": {"agent": "chatty", "branch": "b"}}, 400),
            ("POST", "/api/v1/runs", {"json": {"agent": "chatty", "timeout_s": -1}}, 422),
            ("GET", "/api/v1/runs/unknown-run", {}, 404),
            ("GET", "/api/v1/runs", {"params": {"limit": 0}}, 422),
            ("GET", "/api/v1/runs", {"params": {"limit": 100000}}, 422),
            ("GET", "/api/v1/runs", {"params": {"cursor": "%%%"}}, 400),
            ("GET", "/api/v1/sessions/nope", {}, 404),
            ("POST", "/api/v1/sessions/nope/fork", {"json": {"from_node": "x"}}, 404),
            ("GET", "/api/v1/no-such-route", {}, 404),
            ("POST", "/v1/chat/completions", {"content": b"[]"}, 400),
            ("POST", "/v1/chat/completions", {"json": {"model": "chatty", "messages": []}}, 400),
        ]
        for method, path, kwargs, status in cases:
            reply = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
            assert reply.status_code == status, (method, path, kwargs, reply.text)
            assert "error" in reply.json()


async def test_a_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1000

    async with (
        api_server(tmp_path / "home", max_body_bytes=4096) as api,
        api.client() as client,
    ):
        big = await client.post("/api/v1/runs", json={"agent": "x", "input": "y" * 10_000})
        assert big.status_code == 413
        assert big.json()["error"]["message"].startswith("request body too large")
        streamed = await client.post("/api/v1/runs", content=chunks())
        assert streamed.status_code == 413


async def test_idle_connections_are_kept_for_keep_alive_s(tmp_path: Path) -> None:
    """uvicorn's own default (5 s) is shorter than load balancers' idle timeouts, which
    makes the server close connections a balancer is about to reuse; the setting is used."""

    async def closed_after(port: int, idle_s: float, wait_s: float) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
        length = int(head.split("content-length:")[1].split("\r\n")[0])
        await reader.readexactly(length)
        await asyncio.sleep(idle_s)
        try:
            return await asyncio.wait_for(reader.read(1024), wait_s) == b""  # EOF: closed
        except TimeoutError:
            return False
        finally:
            writer.close()

    assert ServerConfig().keep_alive_s > 60
    async with api_server(tmp_path / "home", keep_alive_s=3) as api:
        port = int(api.url.rsplit(":", 1)[1])
        assert not await closed_after(port, 1.0, wait_s=0.5)
    async with api_server(tmp_path / "home2", keep_alive_s=1) as api:
        port = int(api.url.rsplit(":", 1)[1])
        assert await closed_after(port, 2.0, wait_s=1.0)  # before uvicorn's 5 s


async def test_an_outsider_is_refused_everywhere(api: Api) -> None:
    paths = api.server.app.openapi()["paths"]
    routes = [(set(ops) & {"get", "post", "put", "delete"}, path) for path, ops in paths.items()]
    assert sum(len(methods) for methods, _ in routes) >= 20
    for token in (None, "wrong-token-of-some-length"):
        async with api.client(token) as client:
            for methods, path in routes:
                concrete = path.replace("{name}", "x").replace("{run_id}", "r")
                concrete = concrete.replace("{session}", "s")
                for method in methods:
                    reply = await client.request(method, concrete)
                    assert reply.status_code == 401, (token, method, concrete, reply.text)
                    assert reply.headers["www-authenticate"] == "Bearer"


async def test_health_and_ready(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.health) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert set(ready.json()["checks"]) == {"database", "bus"}


async def test_ready_names_what_failed(api: Api) -> None:
    await api.platform.stores.close()  # the database goes away
    async with httpx.AsyncClient(base_url=api.health) as client:
        ready = await client.get("/ready")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"]["status"] == "failed" and checks["bus"]["status"] == "ok"


# --- OpenAI-compatible ----------------------------------------------------------------------


async def test_the_official_openai_client_lists_completes_and_streams(
    api: Api, tmp_path: Path
) -> None:
    import openai

    async with api.client() as client:
        await deploy(client, tmp_path, "chatty")
    oa = openai.AsyncOpenAI(base_url=f"{api.url}/v1", api_key=TOKEN, max_retries=0)
    models = await oa.models.list()
    assert [m.id for m in models.data] == ["chatty"]
    reply = await oa.chat.completions.with_raw_response.create(
        model="chatty", messages=[{"role": "user", "content": "hello"}]
    )
    completion = reply.parse()
    assert completion.choices[0].message.content == "echo: hello"
    session = reply.headers["x-roost-session"]
    # the session continues with the header, and the run is recorded there
    follow = await oa.chat.completions.create(
        model="chatty",
        messages=[{"role": "user", "content": "again"}],
        extra_headers={"X-Roost-Session": session},
    )
    assert follow.choices[0].message.content == "echo: again"
    stream = await oa.chat.completions.create(
        model="chatty",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "echo: stream me"
    with pytest.raises(openai.NotFoundError):
        await oa.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            base_url=f"{api.url}/v1", api_key="nope", max_retries=0
        ).models.list()
    async with api.client() as client:
        nodes = (await client.get(f"/api/v1/sessions/{session}/nodes")).json()["items"]
    assert [n["kind"] for n in nodes].count("invoke") == 2
