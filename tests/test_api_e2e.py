"""`roost server api` as a user runs it: the monolith on the embedded defaults (SQLite,
memory bus, the embedded Temporal), driven over HTTP, stopped with SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agent_helpers import make_agent
from api_helpers import CHATTY, TOKEN
from cli_helpers import ROOT, cli_env
from roost.agents import pack_folder

pytestmark = [pytest.mark.e2e, pytest.mark.temporal]


def _wait_for_url(proc: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        found = re.search(r"roost API on (http://\S+)", line)
        if found:
            return found.group(1).rstrip(" (")
    raise AssertionError("the API server did not announce its URL:\n" + "".join(seen))


def test_the_monolith_serves_runs_on_the_embedded_defaults(tmp_path: Path) -> None:
    from roost.workflows import stop_embedded_temporal

    home = tmp_path / "home"
    idp = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "idp.pem"
    pem.write_bytes(
        idp.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    env = cli_env(
        home, ROOST_SERVER__ADMIN_TOKEN=TOKEN, JWT_AUDIENCE="roost",
        ROOST_SERVER__JWT_CREATE_USERS="true",
    )  # fmt: skip
    env.pop("ROOST_WORKFLOWS__ENGINE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "roost", "server", "api", "--api-port", "0",
         "--health-port", "0", "--bind-address", "127.0.0.1",
         "--jwt-public-key-file", str(pem), "--jwt-issuer", "https://idp.test"],
        env=env, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        url = _wait_for_url(proc, 120)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            folder = make_agent(tmp_path, "chatty", CHATTY, services=())
            deployed = client.post(
                "/api/v1/agents",
                content=pack_folder(folder),
                headers={"Content-Type": "application/gzip"},
            )
            assert deployed.status_code == 201, deployed.text
            run = client.post("/api/v1/runs", json={"agent": "chatty", "input": "hi"}).json()
            done = client.get(f"/api/v1/runs/{run['id']}/wait").json()
            assert done["output"] == {"reply": "echo: hi"}
            # a durable run: listed from Temporal, with its session in the DAG
            assert client.get(f"/api/v1/runs/{run['id']}").json()["status"] == "completed"
            nodes = client.get(f"/api/v1/sessions/{run['session']}/nodes").json()["items"]
            assert nodes[-1]["kind"] == "complete"
            assert (
                client.get("/api/v1/agents", headers={"Authorization": "Bearer x"}).status_code
                == 401
            )
            # the flags and variables configure sign-in with the identity provider's JWTs
            claims = {"iss": "https://idp.test", "aud": "roost", "sub": "ada",
                      "exp": int(time.time()) + 300}  # fmt: skip
            signed = {"Authorization": f"Bearer {jwt.encode(claims, idp, algorithm='RS256')}"}
            me = client.get("/api/v1/me", headers=signed)
            assert me.status_code == 200 and me.json()["name"] == "ada", me.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop_embedded_temporal(home)
        assert not os.path.exists(
            home / "server" / "admin-token"
        )  # a configured token is kept nowhere


def test_a_bad_jwt_setting_fails_at_start_naming_it(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "roost", "server", "api", "--api-port", "0",
         "--jwt-public-key", "not a key", "--jwt-issuer", "i", "--jwt-audience", "a"],
        env=cli_env(tmp_path / "home"), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "jwt_public_key is not a PEM public key" in proc.stderr, proc.stderr
