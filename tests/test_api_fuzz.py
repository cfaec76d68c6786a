"""Fuzzing every route of the API from its OpenAPI schema, over a real uvicorn on loopback.

Schemathesis generates requests from the ``/openapi.json`` the app serves: its coverage cases
(boundary values, missing and wrong-typed parameters, unexpected methods) and hypothesis'
positive and negative cases of every operation. Hand-written malformed input goes to every
operation too: broken JSON, wrong content types, wrong field types, bodies over the limit,
unknown and overlong ids, odd ``limit`` and ``cursor`` values, bad bundles, bad tokens.

Most requests carry the admin token, so they get past auth to the routes; a share carry none
or a wrong one and must be refused. An agent is deployed and has run first, so a share of the
requests are about ids that exist (most are about ids that do not, which must be 4xx).

Whatever is sent: no answer is a 5xx, every error is JSON with an ``error`` key, and the
server still serves (its health port, and a normal run) afterwards. Generation is
derandomized, so a failure reproduces; hypothesis keeps no database.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import tarfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import Case, GenerationMode
from starlette.requests import Request
from starlette.responses import JSONResponse

from api_helpers import CHATTY, TOKEN, api_server, deploy
from roost.server._limits import BodyLimit

# an agent bundle is bytes, as application/octet-stream is
schemathesis.serializer.alias(
    ["application/gzip", "application/x-gzip"], "application/octet-stream"
)

MAX_BODY = 64 * 1024
#: hypothesis examples per operation and generation mode (positive, negative)
EXAMPLES = 6
#: one case in this many goes without a token, and one more with a wrong one
UNAUTHENTICATED_EVERY = 8
#: one positive case in this many is about ids that exist
KNOWN_ID_EVERY = 3
#: names that exist once the test has set up
AGENT = "fuzz-target"
SECRET = "fuzz-secret"
MODEL = "fuzz-model"
#: an event stream lasts as long as its run: of one, only the status and headers are read
EVENT_STREAM = "text/event-stream"
#: routes that decode their body with ``roost.wire.decode_body`` (msgspec), whose
#: RecursionError on deeply nested JSON was once a 500
DECODE_BODY_ROUTES = ("/v1/chat/completions", "/v1/responses")

_HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)

Expect = int | set[int] | Callable[[int, Any], bool]


@dataclass
class Known:
    """Things that exist on the server."""

    run: str  # completed
    waiting: str  # waits on a question: only its live event stream is asked for
    session_id: str
    session_name: str

    def for_param(self, path: str, name: str) -> list[str]:
        if name == "run_id":
            return [self.run]
        if name == "session":
            return [self.session_id, self.session_name]
        if name == "agent":
            return [AGENT]
        if name == "name":
            if "/secrets/" in path:
                return [SECRET]
            if "/models/" in path:
                return [MODEL]
            return [AGENT]
        return []


@dataclass
class Fuzzer:
    """Sends requests, checks every answer, counts them and collects what is wrong."""

    client: httpx.AsyncClient
    requests: int = 0
    unauthenticated: int = 0
    unsendable: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    operations: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    async def send(
        self,
        label: str,
        method: str,
        url: str,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
        expect: Expect | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """Send one request (``token`` None: no Authorization header unless ``headers`` has
        one) and check the answer: below 500, an error is JSON with ``error``, an outsider
        is refused, and ``expect`` (a status, statuses, or a predicate of status and JSON
        body) holds."""
        sent = dict(headers or {})
        if token is not None and not any(k.lower() == "authorization" for k in sent):
            sent["Authorization"] = f"Bearer {token}"
        authed = any(
            k.lower() == "authorization" and v == f"Bearer {TOKEN}" for k, v in sent.items()
        )
        try:
            request = self.client.build_request(method, url, headers=sent, **kwargs)
        except (httpx.HTTPError, UnicodeError, ValueError, TypeError):
            self.unsendable += 1  # httpx cannot encode it (a header value, say)
            return None
        what = f"{label}: {method} {str(request.url)[:300]}"
        try:
            response = await self.client.send(request, stream=True)
            try:
                kind = response.headers.get("content-type", "")
                if not kind.startswith(EVENT_STREAM):
                    await response.aread()
            finally:
                await response.aclose()
        except httpx.LocalProtocolError:
            self.unsendable += 1  # h11 will not send it (a header value it finds illegal)
            return None
        except httpx.HTTPError as exc:
            self.requests += 1
            self.problems.append(f"no full answer: {what} ({type(exc).__name__}: {exc})")
            return None
        self.requests += 1
        self.unauthenticated += not authed
        status = response.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        body = b"" if kind.startswith(EVENT_STREAM) else response.content
        detail = f"{what} -> {status} {body[:300]!r}"
        try:
            decoded = json.loads(body) if body else None
        except ValueError:
            decoded = None
        if status >= 500:
            self.problems.append(f"5xx: {detail}")
        if status >= 400:
            if not (kind.startswith("application/json") and isinstance(decoded, dict)):
                self.problems.append(f"not JSON: {detail} ({kind})")
            elif "error" not in decoded:
                self.problems.append(f"no 'error': {detail}")
        if not authed and status != 401:  # authentication comes before routing and bodies
            self.problems.append(f"outsider not refused: {detail}")
        if expect is not None and not _expected(expect, status, decoded):
            self.problems.append(f"expected {_describe(expect)}: {detail}")
        return response


def _expected(expect: Expect, status: int, body: Any) -> bool:
    if isinstance(expect, int):
        return status == expect
    if isinstance(expect, set):
        return status in expect
    return expect(status, body)


def _describe(expect: Expect) -> str:
    return str(expect) if isinstance(expect, (int, set)) else (expect.__doc__ or "")


def rejected(status: int, body: Any) -> bool:
    """a 4xx, or a JSON-RPC error (whose HTTP status is 200)"""
    if 400 <= status < 500:
        return True
    return status == 200 and isinstance(body, dict) and "error" in body and "jsonrpc" in body


def below_500(status: int, body: Any) -> bool:
    """below 500"""
    return status < 500


def _token_for(index: int) -> str | None:
    if index % UNAUTHENTICATED_EVERY == 0:
        return None
    if index % UNAUTHENTICATED_EVERY == UNAUTHENTICATED_EVERY // 2:
        return "wrong-token-of-a-plausible-length"
    return TOKEN


# --- schema-driven cases ---------------------------------------------------------------


def _hypothesis_cases(operation: Any) -> list[Case[Any]]:
    """``EXAMPLES`` positive and ``EXAMPLES`` negative cases of ``operation``, the same
    ones every time."""
    cases: list[Case[Any]] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @_HYPOTHESIS
        @given(operation.as_strategy(generation_mode=mode))
        def collect(case: Case[Any]) -> None:
            cases.append(case)

        collect()
    return cases


def _request_of(case: Case[Any], base_url: str) -> dict[str, Any]:
    """httpx's arguments for ``case`` (schemathesis serializes for ``requests``)."""
    data = case.as_transport_kwargs(base_url=base_url)
    dropped = ("authorization", "user-agent", "accept-encoding", "connection")
    headers = {k: v for k, v in data["headers"].items() if k.lower() not in dropped}
    out: dict[str, Any] = {"method": data["method"], "url": data["url"], "headers": headers}
    query: list[tuple[str, str]] = []
    for key, value in (data.get("params") or {}).items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                query.append((str(key), item if isinstance(item, str) else json.dumps(item)))
    if query:
        out["params"] = query
    if data.get("cookies"):
        out["cookies"] = data["cookies"]
    if "json" in data:
        out["content"] = json.dumps(data["json"]).encode()
    elif isinstance(data.get("data"), (bytes, str)):
        out["content"] = data["data"]
    elif data.get("data") is not None:
        out["data"] = data["data"]
    if data.get("files"):
        out["files"] = data["files"]
    return out


def _with_known_ids(case: Case[Any], known: Known, index: int) -> None:
    """Point a positive case at things that exist: its path parameters (never to delete
    them: the rest of the run needs them) and the agent its body names."""
    if case.method.upper() != "DELETE":
        for name in list(case.path_parameters or {}):
            values = known.for_param(case.path, name)
            if values:
                case.path_parameters[name] = values[index % len(values)]
    if isinstance(case.body, dict):
        for key in ("agent", "model"):
            if isinstance(case.body.get(key), str):
                case.body[key] = AGENT


async def fuzz_schema(fuzzer: Fuzzer, schema: Any, base_url: str, known: Known) -> int:
    """Every operation's coverage cases and hypothesis cases; returns how many were sent."""
    before = fuzzer.requests
    index = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        fuzzer.operations.add(operation.label)
        coverage = schema.iter_coverage_cases(
            operation,
            generation_modes=list(GenerationMode),
            generation_config=schema.config.generation_for(operation=operation),
        )
        generated = await asyncio.to_thread(_hypothesis_cases, operation)
        for case in [*coverage, *generated]:
            index += 1
            if (case.meta is None or case.meta.generation.mode.is_positive) and (
                index % KNOWN_ID_EVERY == 0
            ):
                _with_known_ids(case, known, index)
            request = _request_of(case, base_url)
            method, url = request.pop("method"), request.pop("url")
            await fuzzer.send(operation.label, method, url, token=_token_for(index), **request)
    return fuzzer.requests - before


# --- hand-written malformed input ------------------------------------------------------

#: a body each operation's schema accepts, keyed by the schema's name
VALID_BODIES: dict[str, dict[str, Any]] = {
    "RunStart": {"agent": AGENT, "input": "hi"},
    "Answer": {"text": "yes"},
    "Fork": {"from_node": "nope"},
    "Promote": {"branch": "nope"},
    "ModelAdd": {"name": "m", "engine": "openai", "target": "t", "base_url": "http://x"},
    "SecretPut": {"value": "v"},
    "TokenCreate": {"name": "t", "scopes": ["read"]},
    "UserCreate": {"name": "fuzz-user"},
}
WRONG_VALUES: list[Any] = [
    None, -1, 10**30, 1.5e308, True, "x" * 5000, "\u0000\ud7ff", [1, "a"], {"deep": [{}]},
]  # fmt: skip
DEEP_JSON = [b"[" * 5000, b'{"a":' * 3000, b"[" * 3000 + b"]" * 3000]
MALFORMED_JSON: list[bytes] = [
    b"{not json", b"", b"{", b"[]", b"null", b'"a string"', b'{"a": 1,}', b"\xff\xfe\x00",
    b'{"text": "\xff"}', b"\x00" * 64, b'{"a": 1}{"b": 2}', b"\xef\xbb\xbf{}",
]  # fmt: skip
ODD_JSON: list[bytes] = [  # valid for Python's json, not for strict parsers
    b'{"agent": "fuzz-target", "input": NaN}', b'{"value": Infinity, "text": -Infinity}',
    b'{"agent": "fuzz-target", "input": ' + b"[" * 400 + b"]" * 400 + b"}",
    b'{"agent": "fuzz-target", "agent": 5}', b'{"agent": "fuzz-target", "input": "\\ud800"}',
    b'{"agent": "fuzz-target", "input": {"\\udfff": [1]}, "text": "\\ud800", "value": "\\udc00"}',
]  # fmt: skip
CONTENT_TYPES = [
    "text/plain", "application/xml", "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded", "application/json; charset=latin-1", "application/gzip",
    ";;;", "application/json, text/plain",
]  # fmt: skip
ODD_QUERY_VALUES = [
    "-1", "0", "100001", "9" * 40, "abc", "", "1.5", "NaN", "inf", "%%%", "x" * 3000, " 1",
]  # fmt: skip
ODD_CURSORS = [
    "%%%", "====", "AAAA", "x" * 65,
    *(base64.urlsafe_b64encode(v.encode()).decode().rstrip("=") for v in (
        "-5", "1e5", "9" * 47, "9223372036854775808", "٣",
    )),
]  # fmt: skip
UNKNOWN_IDS = ["does-not-exist", "Z" * 128, "a.b-c_d"]
ODD_IDS = [
    "x" * 129, "y" * 20_000, "..", "a%2Fb", "%00", "%20", "%E2%80%AE", "ü", "a b", "-dash",
]  # fmt: skip
BAD_AUTHORIZATION = [
    None, "Bearer", "Basic " + base64.b64encode(b"a:b").decode(), f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}", "Bearer " + "x" * 8000, f"Token {TOKEN}",
]  # fmt: skip


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    path_params: list[str]
    query_params: list[str]
    header_params: list[str]
    body_schema: str  # the name of its JSON body's schema ("" without one)
    body_types: list[str]

    @property
    def label(self) -> str:
        return f"by hand {self.method} {self.path}"

    def url(self, **values: str) -> str:
        url = self.path
        for name in self.path_params:
            url = url.replace("{" + name + "}", values.get(name, "does-not-exist"))
        return url


def operations_of(spec: dict[str, Any]) -> list[Operation]:
    found: list[Operation] = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            params = op.get("parameters", [])
            content = op.get("requestBody", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    path_params=[p["name"] for p in params if p["in"] == "path"],
                    query_params=[p["name"] for p in params if p["in"] == "query"],
                    header_params=[p["name"] for p in params if p["in"] == "header"],
                    body_schema=ref.rsplit("/", 1)[-1],
                    body_types=list(content),
                )
            )
    return found


def body_properties(spec: dict[str, Any], schema_name: str) -> list[str]:
    schema = spec.get("components", {}).get("schemas", {}).get(schema_name, {})
    return list(schema.get("properties", {}))


async def chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    """``total`` bytes sent chunked (no Content-Length)."""
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


def bad_bundles() -> Iterator[bytes]:
    """Bundles a deploy must refuse: not gzip, broken gzip, a tar of the wrong things,
    entries that would write outside the agent's folder or are not plain files."""
    yield b"\x1f\x8b"
    yield b"\x1f\x8b\x08\x00" + b"\x00" * 100
    packed = gzip.compress(b"not a tar at all" * 100)
    yield packed
    yield packed[: len(packed) // 2]
    yield packed[:20] + bytes(b ^ 0xFF for b in packed[20:40]) + packed[40:]

    def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for info, data in members:
                tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
        return buffer.getvalue()

    def file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, data

    def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, bytes]:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        return info, b""

    yield tar_of()
    yield tar_of(file("agent.py", CHATTY.encode()))
    yield tar_of(file("agent.toml", b"not = [toml"))
    yield tar_of(file("agent.toml", b'name = 5\nruntime = "python"\n'))
    yield tar_of(file("agent.toml", b'name = "../../etc"\nruntime = "python"\n'))
    yield tar_of(file("agent.toml", b"\xff\xfe\x00\x00"))
    yield tar_of(file("agent.toml", b'name = "nocode"\nruntime = "python"\nentry = "x:y"\n'))
    yield tar_of(file("../escape.txt", b"x"), file("agent.toml", b'name = "e"\n'))
    yield tar_of(file("/abs.txt", b"x"))
    yield tar_of(special("agent.toml", tarfile.SYMTYPE, "/etc/passwd"))
    yield tar_of(special("hard", tarfile.LNKTYPE, "/etc/passwd"))
    yield tar_of(special("fifo", tarfile.FIFOTYPE))


async def fuzz_by_hand(fuzzer: Fuzzer, spec: dict[str, Any], known: Known) -> int:
    """The malformed input of the module docstring, over every operation; returns how many
    requests were sent."""
    before = fuzzer.requests
    json_type = {"Content-Type": "application/json"}
    for op in operations_of(spec):
        label, send = op.label, fuzzer.send
        # ids that do not exist (a PUT makes the secret it names: one no GET expects absent)
        url = (
            op.url(**dict.fromkeys(op.path_params, "fuzz-put")) if op.method == "PUT" else op.url()
        )
        valid = VALID_BODIES.get(op.body_schema, {})
        valid_json: dict[str, Any] = {"content": json.dumps(valid).encode(), "headers": json_type}
        # unknown ids are 404s (a PUT makes its secret, under names no GET or DELETE asks for)
        for unknown in UNKNOWN_IDS if op.path_params else []:
            if op.method == "PUT":
                values, expect = dict.fromkeys(op.path_params, f"new-{unknown}"[:128]), {200, 201}
            else:
                values, expect = dict.fromkeys(op.path_params, unknown), {404}
            await send(label, op.method, op.url(**values), expect=expect, **valid_json)
        # overlong and odd ids are refused as invalid or unknown
        for odd in ODD_IDS if op.path_params else []:
            values = dict.fromkeys(op.path_params, odd)
            await send(label, op.method, op.url(**values), expect=rejected, **valid_json)
        # ids that exist, with a body that is not JSON
        for name in op.path_params if op.method != "DELETE" else []:
            for value in known.for_param(op.path, name):
                await send(
                    label, op.method, op.url(**{name: value}), content=b"{", headers=json_type
                )
        if "application/json" in op.body_types:
            for raw in [*MALFORMED_JSON, *DEEP_JSON]:
                await send(label, op.method, url, content=raw, headers=json_type, expect=rejected)
            for raw in ODD_JSON:
                await send(label, op.method, url, content=raw, headers=json_type)
            for prop in body_properties(spec, op.body_schema):
                for wrong in WRONG_VALUES:
                    await send(label, op.method, url, json={**valid, prop: wrong})
            await send(label, op.method, url, json={**valid, "unexpected": {"x": [1, 2]}})
        if op.body_types:
            payload = json.dumps(valid).encode() if valid else b"a=b&c=d"
            for kind in CONTENT_TYPES:
                await send(label, op.method, url, content=payload, headers={"Content-Type": kind})
            await send(label, op.method, url, content=payload)  # no Content-Type
        if "application/gzip" in op.body_types:
            for bundle in bad_bundles():
                gz = {"Content-Type": "application/gzip"}
                await send(label, op.method, url, content=bundle, headers=gz, expect=400)
        # bodies over the limit, with a Content-Length and chunked, on every operation; a
        # chunked body is refused when the route reads it (a route that answers first, or
        # has no body, never buffers it)
        over = b"x" * (MAX_BODY + 1)
        await send(label, op.method, url, content=over, headers=json_type, expect=413)
        kind = "application/gzip" if "application/gzip" in op.body_types else "application/json"
        reads = {413} if op.body_schema else below_500
        await send(
            label,
            op.method,
            url,
            content=chunks(len(over)),
            headers={"Content-Type": kind},
            expect=reads,
        )
        # odd query values
        for name in op.query_params:
            for value in ODD_CURSORS if name == "cursor" else ODD_QUERY_VALUES:
                await send(label, op.method, url, params={name: value})
            await send(label, op.method, url, params=[(name, "1"), (name, "2")])
        # odd header parameters
        for name in op.header_params:
            for value in ("", "x" * 201, "x" * 8000, "-1"):
                await send(label, op.method, url, headers={name: value})
        # the live stream of the run that waits (it lasts as long as the run): the fuzzer
        # reads only its status and headers
        if op.path.endswith("/events"):
            for last_id in ("", "nope", "x" * 200):
                live = op.url(run_id=known.waiting)
                await send(label, "GET", live, headers={"Last-Event-ID": last_id}, expect=200)
        # no token, a wrong one, a malformed one: 401, on ids that exist where there are
        values = {
            n: known.for_param(op.path, n)[0] for n in op.path_params if known.for_param(op.path, n)
        }
        for authorization in BAD_AUTHORIZATION:
            headers = {"Authorization": authorization} if authorization is not None else {}
            await send(label, op.method, op.url(**values), token=None, headers=headers, expect=401)
    return fuzzer.requests - before


async def read_back(fuzzer: Fuzzer, known: Known) -> int:
    """Read back everything the fuzzing made: every run that ended (and its events' headers),
    every session with its branches and nodes. A request that was accepted must not have
    stored what cannot be read."""
    before = fuzzer.requests
    label = "read back"

    async def every(path: str, **params: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            query = {**params, "limit": "100", **({"cursor": cursor} if cursor else {})}
            reply = await fuzzer.send(label, "GET", path, params=query, expect=200)
            if reply is None or reply.status_code != 200:
                return items
            page = reply.json()
            items.extend(page["items"])
            if not page["next"]:
                return items
            cursor = page["next"]

    for run in await every("/api/v1/runs"):
        if run["id"] == known.waiting or run["status"] == "running":
            continue  # /wait would wait
        base = f"/api/v1/runs/{run['id']}"
        await fuzzer.send(label, "GET", base, expect=200)
        await fuzzer.send(label, "GET", f"{base}/wait", params={"timeout_s": "5"}, expect=200)
        await fuzzer.send(label, "GET", f"{base}/events", expect=200)
    for session in await every("/api/v1/sessions"):
        base = f"/api/v1/sessions/{session['id']}"
        await fuzzer.send(label, "GET", base, expect=200)
        reply = await fuzzer.send(label, "GET", f"{base}/branches", expect=200)
        for branch in reply.json() if reply is not None and reply.status_code == 200 else []:
            await every(f"{base}/nodes", branch=branch["name"])
    for path in ("/api/v1/agents", "/api/v1/models"):
        await every(path)
    return fuzzer.requests - before


# --- the fuzz test -----------------------------------------------------------------------


async def _setup(client: httpx.AsyncClient, root: Path) -> Known:
    await deploy(client, root, AGENT)
    done = (await client.post("/api/v1/runs", json={"agent": AGENT, "input": "hi"})).json()
    assert (await client.get(f"/api/v1/runs/{done['id']}/wait")).json()["ok"] is True
    waiting = await client.post("/api/v1/runs", json={"agent": AGENT, "input": {"ask": "?"}})
    assert waiting.status_code == 202, waiting.text
    session = (await client.get(f"/api/v1/sessions/{done['session']}")).json()
    assert (await client.put(f"/api/v1/secrets/{SECRET}", json={"value": "v"})).status_code == 200
    model = {"name": MODEL, "engine": "openai", "target": "t", "base_url": "http://x"}
    assert (await client.post("/api/v1/models", json=model)).status_code == 201
    return Known(
        run=done["id"],
        waiting=waiting.json()["id"],
        session_id=session["id"],
        session_name=session["name"],
    )


@pytest.fixture
def hypothesis_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hypothesis' caches (its Unicode tables: it keeps no database here) beside pytest's
    temporary folders, which outlive a session (so they are built once, not every run),
    never in the repository's ``.hypothesis``."""
    set_hypothesis_home_dir(tmp_path_factory.getbasetemp().parent / "hypothesis")
    try:
        yield
    finally:
        set_hypothesis_home_dir(None)


@pytest.mark.usefixtures("hypothesis_home")
async def test_fuzz_every_route_never_500s(tmp_path: Path) -> None:
    started = time.monotonic()
    async with api_server(tmp_path / "home", max_body_bytes=MAX_BODY, rate_limit_per_s=0) as api:
        async with api.client() as client:
            known = await _setup(client, tmp_path)
            spec = (await client.get("/openapi.json")).json()
        schema = schemathesis.openapi.from_dict(spec, config=schemathesis.Config(seed=0))
        transport = httpx.AsyncHTTPTransport(retries=0)
        async with httpx.AsyncClient(base_url=api.url, timeout=20.0, transport=transport) as raw:
            fuzzer = Fuzzer(raw)
            generated = await fuzz_schema(fuzzer, schema, api.url, known)
            by_hand = await fuzz_by_hand(fuzzer, spec, known)
            read = await read_back(fuzzer, known)
        # the server still serves: its health port, and a normal run
        async with httpx.AsyncClient(base_url=api.health) as health:
            assert (await health.get("/health")).json() == {"status": "ok"}
        async with api.client() as client:
            run = await client.post("/api/v1/runs", json={"agent": AGENT, "input": "after"})
            assert run.status_code == 202, run.text
            done = (await client.get(f"/api/v1/runs/{run.json()['id']}/wait")).json()
            assert done["output"] == {"reply": "echo: after"}
            await client.post(f"/api/v1/runs/{known.waiting}/cancel")
    elapsed = time.monotonic() - started
    fives = sum(n for status, n in fuzzer.statuses.items() if status >= 500)
    print(
        f"\nfuzz: {fuzzer.requests} requests, {len(fuzzer.operations)} operations, {fives} 5xx "
        f"in {elapsed:.1f}s ({generated} from the schema, {by_hand} by hand, {read} reading "
        f"back what they made; "
        f"{fuzzer.unauthenticated} without a valid token, all 401; "
        f"{fuzzer.unsendable} unsendable by httpx); "
        f"statuses {dict(sorted(fuzzer.statuses.items()))}"
    )
    assert len(fuzzer.operations) >= 20
    assert not fuzzer.problems, f"{len(fuzzer.problems)} problems:\n" + "\n".join(
        fuzzer.problems[:40]
    )


# --- regressions: what the fuzzing found ---------------------------------------------------


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


async def test_a_cursor_past_any_database_limit_is_a_400(tmp_path: Path) -> None:
    """``GET /api/v1/sessions?cursor=<base64 of 9223372036854775808>`` was a 500: the
    offset went into the database's LIMIT, past a 64-bit integer (OverflowError)."""
    async with api_server(tmp_path / "home") as api, api.client() as client:
        lists = ["/api/v1/agents", "/api/v1/runs", "/api/v1/sessions", "/api/v1/models"]
        for path in lists:
            for offset in (2**63, 10**47):
                reply = await client.get(path, params={"cursor": _cursor(offset)})
                assert reply.status_code == 400, (path, reply.text)
                assert "not a cursor this API gave" in reply.json()["error"]["message"]
            # a large offset that is still a number a database takes is an empty page
            page = await client.get(path, params={"cursor": _cursor(2**31 - 1)})
            assert page.status_code == 200, (path, page.text)
            assert page.json()["items"] == []


async def test_a_chunked_body_over_the_limit_to_a_route_reading_it_is_a_clean_413(
    tmp_path: Path,
) -> None:
    """A chunked body over the limit to a route that reads its body itself
    (``POST /v1/chat/completions``, ``POST /api/v1/agents``): the route saw the refusal as
    a ClientDisconnect, which escaped the app (uvicorn logged "Exception in ASGI
    application" and dropped the connection before the rest of the body was drained, so the
    client could get a reset instead of the 413)."""
    async with (
        api_server(tmp_path / "home", max_body_bytes=4096) as api,
        api.client() as client,
    ):
        for path, kind in (
            ("/v1/chat/completions", "application/json"),
            ("/api/v1/agents", "application/gzip"),
        ):
            for _ in range(3):
                reply = await client.post(
                    path, content=chunks(200_000), headers={"Content-Type": kind}
                )
                assert reply.status_code == 413, (path, reply.text)
                assert "too large" in reply.json()["error"]["message"]
        # the connection and server are fine afterwards
        assert (await client.get("/api/v1/agents")).status_code == 200


async def test_body_limit_swallows_a_routes_disconnect_after_refusing() -> None:
    """The same at the ASGI level: an app reading the body with ``Request.body()`` gets
    ClientDisconnect once the limit refuses; the middleware answers 413 and returns."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await Request(scope, receive).body()  # raises ClientDisconnect
        await JSONResponse({"never": "sent"})(scope, receive, send)

    parts = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3
    parts.append({"type": "http.request", "body": b"", "more_body": False})
    incoming = iter(parts)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(incoming, {"type": "http.disconnect"})

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": []}
    await BodyLimit(app, max_bytes=1000)(scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "payload_too_large"
    assert len(sent) == 2
    assert next(incoming, None) is None  # the rest of the body was drained


async def test_a_run_input_that_could_not_be_read_back_is_a_422(tmp_path: Path) -> None:
    """``POST /api/v1/runs`` took any JSON as the input, and two kinds were accepted (202)
    but broke reading back: a lone surrogate (``{"input": "\\ud800"}``: the run died
    unrecorded and ``GET /api/v1/runs/{id}/wait`` was a 500, UnicodeEncodeError), and input
    nested ~250 levels deep (``GET /api/v1/sessions/{id}/nodes`` was a 500,
    PydanticSerializationError). Both are refused up front now."""
    json_type = {"Content-Type": "application/json"}
    async with api_server(tmp_path / "home") as api, api.client() as client:
        await deploy(client, tmp_path, AGENT)
        for input_ in (b'"\\ud800"', b'{"a": ["\\udfff"]}', b'{"\\ud800": 1}'):
            body = b'{"agent": "fuzz-target", "input": ' + input_ + b"}"
            reply = await client.post("/api/v1/runs", content=body, headers=json_type)
            assert reply.status_code == 422, (input_, reply.text)
            assert "surrogate" in reply.json()["error"]["message"]
        too_deep = {"agent": AGENT, "input": json.loads("[" * 65 + "]" * 65)}
        reply = await client.post("/api/v1/runs", json=too_deep)
        assert reply.status_code == 422, reply.text
        assert "nested more than 64 levels" in reply.json()["error"]["message"]
        # at the limit, and with valid non-ASCII text, a run starts and reads back
        for input_ in (json.loads("[" * 64 + "]" * 64), {"text": "\U0001f989 ü"}):
            started = await client.post("/api/v1/runs", json={"agent": AGENT, "input": input_})
            assert started.status_code == 202, started.text
            run = started.json()
            assert (await client.get(f"/api/v1/runs/{run['id']}/wait")).status_code == 200
            nodes = await client.get(f"/api/v1/sessions/{run['session']}/nodes")
            assert nodes.status_code == 200, nodes.text
            assert nodes.json()["items"][0]["content"]["input"] == input_


async def test_deeply_nested_json_to_the_openai_routes_is_a_400(tmp_path: Path) -> None:
    async with api_server(tmp_path / "home") as api, api.client() as client:
        for path in DECODE_BODY_ROUTES:
            for raw in DEEP_JSON:
                reply = await client.post(
                    path, content=raw, headers={"Content-Type": "application/json"}
                )
                assert reply.status_code == 400, (path, raw[:20], reply.text)
