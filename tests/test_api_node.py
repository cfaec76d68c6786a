"""The npm ``openai`` client against the API server: ``tests/node/client.mjs`` lists models,
completes and streams chat completions, and creates, continues and streams Responses, as a
Node application would. ``npm ci`` installs the locked client into ``tests/node`` once (a
stamp of the lock's hash in ``node_modules`` says it is current)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api_helpers import TOKEN, Api, api_server, deploy

pytestmark = pytest.mark.processes

NODE_DIR = Path(__file__).parent / "node"
STAMP = NODE_DIR / "node_modules" / ".roost-lock-sha256"


@contextlib.contextmanager
def _exclusive(name: str) -> Iterator[None]:
    """One process at a time (parallel test runs share ``tests/node``)."""
    with (Path(tempfile.gettempdir()) / name).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def node_client() -> Path:
    """``tests/node`` with its locked dependencies installed (``npm ci``, when the lock
    changed since the last install)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not on PATH: the npm openai client cannot run")
    digest = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    with _exclusive("roost-tests-node-npm-ci.lock"):
        if not (STAMP.is_file() and STAMP.read_text() == digest):
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=NODE_DIR, capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
            STAMP.write_text(digest)
    return NODE_DIR / "client.mjs"


async def run_node(script: Path, *args: str, timeout: float = 90.0) -> dict[str, Any]:
    """Run ``node script args`` without blocking the loop the API server runs in; its JSON."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), *args, cwd=script.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"node {script.name} did not finish within {timeout:g}s") from None
    assert proc.returncode == 0, f"node {script.name} failed:\n{stderr.decode()}"
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def test_the_npm_openai_client_lists_completes_streams_and_uses_responses(
    node_client: Path, tmp_path: Path
) -> None:
    async with api_server(tmp_path / "home") as api:
        async with api.client() as client:
            await deploy(client, tmp_path, "chatty")
        out = await run_node(node_client, api.url, TOKEN, "chatty")
        nodes = await _nodes(api, out["completion"]["session"])

    assert out["models"] == ["chatty"]
    assert out["completion"]["content"] == "echo: hello from node"
    assert out["completion"]["finish_reason"] == "stop"
    assert out["completion_follow"] == "echo: again"
    assert [n["kind"] for n in nodes].count("invoke") == 2  # the header continued the session
    assert out["chat_stream"] == {"text": "echo: stream me", "usage": True}
    assert out["chat_stream_helper"] == {"text": "echo: helper", "final": "echo: helper"}

    assert out["response"]["status"] == "completed"
    assert out["response"]["output_text"] == "echo: hi responses"
    follow = out["response_follow"]
    assert follow["output_text"] == "echo: continue"
    assert follow["previous_response_id"] == out["response"]["id"] != follow["id"]
    # the response ids name the session: the follow-up ran in the first one's session
    assert follow["id"].split("_")[1] == out["response"]["id"].split("_")[1]

    streamed = out["response_stream"]
    assert [e["type"] for e in streamed["events"]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in streamed["events"]] == list(range(9))
    assert streamed["deltas"] == ["echo: stream responses"]
    assert streamed["status"] == "completed"
    assert streamed["output_text"] == "echo: stream responses"

    assert out["not_found"]["status"] == 404
    assert out["not_found"]["name"] == "NotFoundError"


async def _nodes(api: Api, session: str) -> list[dict[str, Any]]:
    async with api.client() as client:
        reply = await client.get(f"/api/v1/sessions/{session}/nodes")
        assert reply.status_code == 200, reply.text
        return list(reply.json()["items"])
