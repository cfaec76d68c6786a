"""Signing in with an identity provider's JWTs, over a real uvicorn. The tests are the
provider: they make their own key pairs, sign their own tokens, and serve a JWKS from a real
HTTP server on loopback. Each refusal names its reason; each would pass if its check were
dropped."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from api_helpers import Api, api_server, bearer
from roost.auth import JwtVerifier
from roost.config import ConfigError, ServerConfig

ISSUER = "https://idp.example.test"
AUDIENCE = "roost-api"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign(key: Any, alg: str = "RS256", kid: str | None = None, **claims: Any) -> str:
    now = time.time()
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": int(now),
        "exp": int(now + 600),
        "preferred_username": "ada",
        "email": "ada@example.test",
        "org": "acme",
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"kid": kid} if kid else None
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def hs256(claims: dict[str, Any], secret: bytes) -> str:
    """A token "signed" with HMAC (PyJWT itself refuses to make one with a PEM secret)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{head}.{part(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(mac)}"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
async def api(tmp_path: Path, key: rsa.RSAPrivateKey) -> Any:
    config = {
        "jwt_public_key": public_pem(key),
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_create_users": True,
        "jwt_tenant_claim": "org",
    }
    async with api_server(tmp_path / "home", **config) as server:
        yield server


def client(api: Api, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=api.url, headers=bearer(token), timeout=30.0)


async def refusal(api: Api, token: str) -> str:
    async with client(api, token) as c:
        reply = await c.get("/api/v1/me")
    assert reply.status_code == 401, reply.text
    message: str = reply.json()["error"]["message"]
    return message


async def test_a_valid_jwt_is_a_user_made_on_first_sight(api: Api, key: Any) -> None:
    async with client(api, sign(key)) as ada:
        me = (await ada.get("/api/v1/me")).json()
        assert me["name"] == "ada" and me["tenant"] == "acme" and me["role"] == "member"
        assert me["token_id"] is None
        assert (await ada.get("/api/v1/agents")).status_code == 200
    # a new token of the same subject (and an uncached one) is the same user
    async with client(api, sign(key, iat=int(time.time()) - 1)) as again:
        assert (await again.get("/api/v1/me")).json()["id"] == me["id"]
    async with api.client() as operator:
        users = [u for u in (await operator.get("/api/v1/users")).json() if u["name"] == "ada"]
        assert len(users) == 1 and users[0]["subject"] == f"{ISSUER}|user-1"
        audit = (await operator.get("/api/v1/audit", params={"action": "user.create"})).json()
        assert [e["detail"].get("via") for e in audit] == ["jwt"]
    # another subject with the same display name gets a name of its own
    async with client(api, sign(key, sub="user-2")) as other:
        assert (await other.get("/api/v1/me")).json()["name"].startswith("ada-")


async def test_bad_jwts_are_refused_with_the_reason(api: Api, key: Any) -> None:
    now = time.time()
    assert "expired" in await refusal(api, sign(key, exp=int(now - 120)))
    assert "audience" in await refusal(api, sign(key, aud="someone-else"))
    assert "issuer" in await refusal(api, sign(key, iss="https://evil.test"))
    assert "not valid yet" in await refusal(api, sign(key, nbf=int(now + 300)))
    assert "'sub'" in await refusal(api, sign(key, sub=None))
    assert "'exp'" in await refusal(api, sign(key, exp=None))
    assert "'org'" in await refusal(api, sign(key, org=None))  # no tenant claim
    assert "does not verify" in await refusal(api, sign(rsa_key()))  # another key
    # key confusion: the public key as an HMAC secret must not verify
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(now + 600), "org": "acme"}
    forged = hs256(claims, public_pem(key).encode())
    assert "does not verify" in await refusal(api, forged)
    unsigned = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x"}, None, algorithm="none")
    assert "does not verify" in await refusal(api, unsigned)
    # within the allowed clock skew (60 s), a just-expired token still works
    async with client(api, sign(key, exp=int(now - 20))) as late:
        assert (await late.get("/api/v1/me")).status_code == 200


async def test_jwt_scopes_limit_what_it_may_do(api: Api, key: Any) -> None:
    async with client(api, sign(key, scope="openid read")) as reader:
        assert (await reader.get("/api/v1/agents")).status_code == 200
        started = await reader.post("/api/v1/runs", json={"agent": "x", "input": None})
        assert started.status_code == 403
    # a JWT cannot make a member an admin by claiming the scope
    async with client(api, sign(key, scope="admin")) as claimer:
        assert (await claimer.get("/api/v1/users")).status_code == 403


async def test_without_first_sight_an_admin_adds_the_user(
    tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    pem = tmp_path / "idp.pem"
    pem.write_text(public_pem(key))
    config = {"jwt_public_key_file": pem, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    async with api_server(tmp_path / "home", **config) as api:
        token = sign(key, sub="grace")
        assert "no roost user has subject" in await refusal(api, token)
        async with api.client() as operator:
            made = await operator.post(
                "/api/v1/users",
                json={"name": "grace", "tenant": "beta", "subject": f"{ISSUER}|grace"},
            )
            assert made.status_code == 201, made.text
            async with client(api, token) as grace:
                me = (await grace.get("/api/v1/me")).json()
                assert me["name"] == "grace" and me["tenant"] == "beta"
            disabled = await operator.delete(f"/api/v1/users/{made.json()['id']}")
            assert disabled.status_code == 204
        assert "disabled" in await refusal(api, token)


class _Jwks:
    """A real HTTP server on loopback serving a JWKS that the test can rotate."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def add(self, kid: str, key: Any, alg: str) -> None:
        algorithm = jwt.get_algorithm_by_name(alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
        self.keys.append({**jwk, "kid": kid, "use": "sig", "alg": alg})


@pytest.fixture
def jwks() -> Iterator[_Jwks]:
    served = _Jwks()
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()


async def test_jwks_keys_by_kid_and_rotation(tmp_path: Path, jwks: _Jwks) -> None:
    first, second = rsa_key(), ed25519.Ed25519PrivateKey.generate()
    jwks.add("k1", first, "RS256")
    config = {
        "jwks_url": jwks.url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_create_users": True,
        "token_cache_s": 0.0,
        "jwks_refresh_cooldown_s": 0.5,
    }
    async with api_server(tmp_path / "home", **config) as api:
        token = sign(first, kid="k1")
        async with client(api, token) as ada:
            assert (await ada.get("/api/v1/me")).status_code == 200
            assert (await ada.get("/api/v1/me")).status_code == 200
        assert jwks.fetches == 1  # the set is cached
        # the provider rotates in an Ed25519 key: its tokens work without a restart
        jwks.add("k2", second, "EdDSA")
        await asyncio.sleep(0.6)  # past the cooldown of refreshes for an unknown kid
        async with client(api, sign(second, alg="EdDSA", kid="k2")) as rotated:
            assert (await rotated.get("/api/v1/me")).status_code == 200
        fetched = jwks.fetches
        for _ in range(5):  # made-up kids: at most one refetch per cooldown
            assert "does not verify" in await refusal(api, sign(rsa_key(), kid="k3"))
        assert jwks.fetches <= fetched + 1
        # a kid the set has, with another key's signature
        assert "does not verify" in await refusal(api, sign(rsa_key(), kid="k1"))


def test_jwt_configuration_errors_name_the_setting(tmp_path: Path) -> None:
    pem = public_pem(rsa_key())
    base = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    assert JwtVerifier.from_config(ServerConfig()) is None
    cases: list[tuple[dict[str, Any], str]] = [
        ({"jwt_public_key": pem, "jwt_audience": AUDIENCE}, "jwt_issuer"),
        ({"jwt_public_key": "not a key", **base}, "not a PEM public key"),
        ({"jwt_public_key": pem, "jwt_algorithms": ["HS256"], **base}, "HS256"),
        ({"jwt_public_key": pem, "jwks_url": "http://x", **base}, "one of"),
        ({"jwt_public_key": pem, "jwt_public_key_file": tmp_path / "k.pem", **base}, "not both"),
        ({"jwt_public_key_file": tmp_path / "missing.pem", **base}, "jwt_public_key_file"),
    ]
    for fields, expected in cases:
        with pytest.raises(ConfigError, match=expected):
            JwtVerifier.from_config(ServerConfig(**fields))
