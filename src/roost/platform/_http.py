"""The platform as a client of a roost API server, over HTTP(S): :class:`HttpPlatform`.

The CLI picks it when ``client.toml`` (or ``ROOST_CLIENT__API_URL``) names an API server
(``roost server api``); every command then goes to ``/api/v1`` with the bearer token:

* agents: ``POST /agents`` (the folder packed by :func:`~roost.agents.pack_folder`), list,
  get, delete;
* runs: ``POST /runs`` starts one, ``GET /runs/{id}/events`` follows it as server-sent
  events (reconnecting with ``Last-Event-ID`` when the stream breaks, so no durable event is
  lost or seen twice), get, list, cancel, answer;
* sessions, branches, nodes, fork, promote; models list, add, remove;
* secrets: put, exists, delete. The API never returns a secret's value nor lists them, so
  :meth:`HttpSecretStore.get` and :meth:`HttpSecretStore.list` raise an
  :class:`~roost.protocol.InvalidRequestError` saying so.

What the API does not offer fails with a clear :class:`~roost.protocol.InvalidRequestError`
(``roost model available``: the models engines can serve). API errors (``{"error":
{"code", "message"}}``) come back as the :class:`~roost.protocol.RoostError` of their code;
an unreachable server is a :class:`~roost.protocol.ServiceUnavailableError` naming its URL,
a server too slow to answer a :class:`~roost.protocol.ServiceTimeoutError`.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from roost import __version__
from roost.agents import (
    OutputCallback,
    pack_agent,
)
from roost.config import ClientSettings, ConfigError
from roost.platform._harness_rpc import DEPLOY_TIMEOUT_S
from roost.platform._tenant import refuse_tenant
from roost.protocol import (
    CompleteMessage,
    ErrorCode,
    ErrorInfo,
    EventMessage,
    InvalidRequestError,
    Message,
    NotFoundError,
    ProtocolError,
    RoostError,
    ServiceTimeoutError,
    ServiceUnavailableError,
    Usage,
    decode,
)
from roost.runtime import EventCallback, RunInfo, RunResult, RunStarted
from roost.stores import AgentRecord, AvailableModel, Branch, ModelRecord, Node, Session

T = TypeVar("T")

API_PREFIX = "/api/v1"
PAGE_SIZE = 100
"""Items asked for per page of a list (the server's ``max_page_size`` is 200 by default)."""
STREAM_IDLE_S = 90.0
"""An event stream silent this long is broken (the server pings every ``heartbeat_s``,
15 s by default): reconnect."""
RECONNECT_ATTEMPTS = 5
"""Reconnections of an event stream in a row, with nothing received in between, before
giving up."""

_CODE_BY_STATUS: dict[int, str] = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.AUTH,
    403: ErrorCode.AUTH,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID_REQUEST,
    409: ErrorCode.INVALID_REQUEST,
    413: ErrorCode.INVALID_REQUEST,
    415: ErrorCode.INVALID_REQUEST,
    422: ErrorCode.INVALID_REQUEST,
    429: ErrorCode.RATE_LIMITED,
    502: ErrorCode.UPSTREAM,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.TIMEOUT,
}
"""The code of an error answered without roost's error body (a proxy's, say)."""

_TOKEN_HINT = "set token or token_file in client.toml, or ROOST_CLIENT__TOKEN"


# --- server-sent events ------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event of a ``text/event-stream``: its type (``message`` when the
    stream gave none), its data lines joined by newlines, and its own ``id`` (``None`` when
    it carried none; the stream's last event id is then unchanged)."""

    event: str
    data: str
    id: str | None = None


class SseDecoder:
    """Parses the lines of a ``text/event-stream`` into events, as the HTML standard's
    event-stream interpretation does: ``field: value`` lines, ``:`` comments (the server's
    keep-alive pings), an event dispatched at each blank line.

    :attr:`last_event_id` is what a reconnection sends as ``Last-Event-ID``: the last id the
    stream gave, as of the last dispatched event (an event cut off by the stream's end never
    counts: it was not delivered, so the server sends it again)."""

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        self._id_buffer = last_event_id
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line (without its end of line); the event it completes, if any."""
        if not line:
            self.last_event_id = self._id_buffer
            event = None
            if self._data:
                event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return event
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id_buffer = self._id = value
        # "retry" and unknown fields are ignored
        return None


# --- errors ---------------------------------------------------------------------------------


def error_from_response(status: int, body: bytes, *, url: str) -> RoostError:
    """The roost error of an HTTP error answer of the API at ``url``: the exception of the
    code in its ``{"error": {"code", "message", "details"}}`` body, or (a body of another
    shape: a proxy's) the code of its status."""
    try:
        parsed: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    details: dict[str, Any] = {}
    if (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    ):
        code: str = error["code"]
        message: str = error["message"]
        extra = error.get("details")
        if isinstance(extra, dict):
            details = {k: v for k, v in extra.items() if k not in ("code", "message")}
    else:
        fallback = ErrorCode.INTERNAL if status >= 500 else ErrorCode.INVALID_REQUEST
        code = _CODE_BY_STATUS.get(status, fallback)
        text = " ".join(body.decode(errors="replace").split())
        message = f"{url} answered HTTP {status}" + (f": {text[:300]}" if text else "")
    if code == ErrorCode.AUTH:
        message = f"the roost API at {url} refused the request: {message} ({_TOKEN_HINT})"
    return RoostError.from_info(ErrorInfo(code=code, message=message, details=details))


# --- the API's records ----------------------------------------------------------------------


def agent_from_json(data: Mapping[str, Any], *, url: str = "") -> AgentRecord:
    """An agent of the API; its ``path`` is the agent's URL (its files stay on the server)."""
    name = str(data["name"])
    return AgentRecord(
        name=name,
        version=int(data["version"]),
        manifest=dict(data["manifest"]),
        path=f"{url}{API_PREFIX}/agents/{name}",
        deployed_at=float(data["deployed_at"]),
    )


def session_from_json(data: Mapping[str, Any]) -> Session:
    return Session(
        id=str(data["id"]),
        name=str(data["name"]),
        agent=str(data["agent"]),
        status=str(data["status"]),
        main_branch=str(data["main_branch"]),
        created_at=float(data["created_at"]),
        updated_at=float(data["updated_at"]),
    )


def branch_from_json(data: Mapping[str, Any]) -> Branch:
    return Branch(
        session=str(data["session"]),
        name=str(data["name"]),
        head=data.get("head"),
        created_from=data.get("created_from"),
        created_at=float(data["created_at"]),
    )


def node_from_json(data: Mapping[str, Any], *, session: str) -> Node:
    """A node of the API (which names its session in the URL, not in the node)."""
    return Node(
        id=str(data["id"]),
        session=session,
        branch=str(data["branch"]),
        parent=data.get("parent"),
        kind=data["kind"],
        content=dict(data["content"]),
        created_at=float(data["created_at"]),
        seq=int(data["seq"]),
    )


def model_from_json(data: Mapping[str, Any]) -> ModelRecord:
    return ModelRecord(
        name=str(data["name"]),
        kind=data["kind"],
        engine=data["engine"],
        target=str(data["target"]),
        base_url=str(data.get("base_url") or ""),
        api_key_secret=str(data.get("api_key_secret") or ""),
        dimension=int(data.get("dimension") or 0),
    )


def run_from_json(data: Mapping[str, Any]) -> RunInfo:
    closed = data.get("closed_at")
    return RunInfo(
        id=str(data["id"]),
        agent=str(data["agent"]),
        session=str(data["session"]),
        branch=str(data["branch"]),
        status=data["status"],
        started_at=float(data["started_at"]),
        closed_at=None if closed is None else float(closed),
        question=str(data.get("question") or ""),
    )


def completion_from_json(data: Mapping[str, Any], *, agent: str = "") -> CompleteMessage:
    """The completion of ``GET /runs/{id}/wait`` (what the event stream's ``complete``
    carries, less the message's envelope)."""
    error = data.get("error")
    usage = data.get("usage") or {}
    return CompleteMessage(
        correlation_id=str(data["run_id"]),
        session=str(data["session"]),
        branch=str(data["branch"]),
        agent=agent,
        ok=bool(data["ok"]),
        output=data.get("output"),
        error=None
        if not error
        else ErrorInfo(code=str(error["code"]), message=str(error["message"])),
        usage=Usage(
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        ),
        duration_ms=float(data.get("duration_ms") or 0.0),
    )


def _branches(data: Any) -> list[Branch]:
    if not isinstance(data, list):
        raise TypeError("not a list of branches")
    return [branch_from_json(b) for b in data]


def _segment(value: str) -> str:
    """``value`` as one segment of a URL path."""
    return quote(value, safe="")


# --- the HTTP client -------------------------------------------------------------------------


class ApiClient:
    """One API server: requests under ``/api/v1`` with the bearer token, their JSON, and
    every failure as a :class:`~roost.protocol.RoostError`."""

    def __init__(self, client: ClientSettings) -> None:
        if not client.api_url:
            raise ConfigError("no API server configured: set api_url (or ROOST_CLIENT__API_URL)")
        self.url = client.api_url
        self.timeout_s = client.timeout_s
        headers = {"User-Agent": f"roost/{__version__}", "Accept": "application/json"}
        token = client.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = True
        if client.ca_file:
            ca_file = Path(client.ca_file).expanduser()
            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"ca_file {ca_file}: {exc}") from None
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(client.timeout_s),
            verify=verify,
        )

    async def close(self) -> None:
        await self.http.aclose()

    def unreachable(self, method: str, path: str, exc: BaseException) -> ServiceUnavailableError:
        reason = str(exc) or type(exc).__name__
        return ServiceUnavailableError(
            f"cannot reach the roost API at {self.url} ({method} {path}): {reason}",
            url=self.url,
        )

    def too_slow(self, method: str, path: str, timeout_s: float) -> ServiceTimeoutError:
        return ServiceTimeoutError(
            f"the roost API at {self.url} did not answer {method} {path} within {timeout_s:g}s",
            url=self.url,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """The JSON answer of ``method`` ``/api/v1{path}`` (``None`` for an empty one)."""
        url = API_PREFIX + path
        timeout = timeout_s or self.timeout_s
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self.http.request(
                method,
                url,
                json=json,
                params=query,
                content=content,
                headers=headers,
                timeout=timeout,
            )
        except httpx.TimeoutException:
            raise self.too_slow(method, url, timeout) from None
        except httpx.HTTPError as exc:
            raise self.unreachable(method, url, exc) from None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.content, url=self.url)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            raise ProtocolError(
                f"the roost API at {self.url} answered {method} {url} with invalid JSON"
            ) from None

    def build(self, what: str, make: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``make(*args, **kwargs)`` (a record from an answer's JSON); an answer of an
        unexpected shape is a ProtocolError."""
        try:
            return make(*args, **kwargs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(
                f"the roost API at {self.url} answered {what} of an unexpected shape: {exc!r}"
            ) from None

    async def pages(
        self, path: str, params: Mapping[str, Any] | None = None, *, limit: int | None = None
    ) -> list[Any]:
        """The items of a paged list (``{"items", "next"}``), following ``next``: all of
        them, or the first ``limit``."""
        if limit is not None and limit <= 0:
            return []
        items: list[Any] = []
        cursor: str | None = None
        while True:
            wanted = PAGE_SIZE if limit is None else min(limit - len(items), PAGE_SIZE)
            page = await self.request(
                "GET", path, params={**(params or {}), "limit": wanted, "cursor": cursor}
            )
            chunk, cursor = self.build(f"a page of {path}", _page, page)
            items.extend(chunk)
            if not cursor or (limit is not None and len(items) >= limit):
                return items if limit is None else items[:limit]


def _page(page: Any) -> tuple[list[Any], str | None]:
    items = page["items"]
    if not isinstance(items, list):
        raise TypeError("items is not a list")
    cursor = page.get("next")
    return items, str(cursor) if cursor else None


class HttpRunControl:
    """Started runs over the API (a :class:`~roost.platform.RunControl`): their event
    streams, status, cancellation and answers."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def wait(
        self,
        run_id: str,
        *,
        session: str = "",
        timeout_s: float | None = None,
        on_event: EventCallback | None = None,
    ) -> CompleteMessage:
        """Follow run ``run_id``'s event stream to its completion (``session`` is accepted
        for :class:`~roost.platform.RunControl` parity: the run names it). Events recorded
        before the call are delivered too, then the live ones."""
        if timeout_s is None:
            return await self.follow(run_id, on_event)
        try:
            async with asyncio.timeout(timeout_s):
                return await self.follow(run_id, on_event)
        except TimeoutError:
            raise ServiceTimeoutError(
                f"run {run_id} did not finish within {timeout_s:g}s; it is still running"
            ) from None

    async def follow(self, run_id: str, on_event: EventCallback | None = None) -> CompleteMessage:
        """Stream ``GET /runs/{id}/events`` until its ``complete``, delivering every other
        event to ``on_event``; a stream that breaks is resumed after the last event id."""
        path = f"{API_PREFIX}/runs/{_segment(run_id)}/events"
        decoder = SseDecoder()
        failures = 0
        while True:
            # a new connection: an event the last one cut off starts again from scratch
            decoder = SseDecoder(decoder.last_event_id)
            headers = {"Accept": "text/event-stream"}
            if decoder.last_event_id:
                headers["Last-Event-ID"] = decoder.last_event_id
            broke: RoostError | None = None
            timeout = httpx.Timeout(self.api.timeout_s, read=STREAM_IDLE_S)
            try:
                async with self.api.http.stream(
                    "GET", path, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code >= 400:
                        body = await response.aread()
                        broke = error_from_response(response.status_code, body, url=self.api.url)
                        if not broke.retryable:
                            raise broke
                    else:
                        async for line in response.aiter_lines():
                            failures = 0  # the server answers: a later break is a new one
                            event = decoder.feed(line)
                            if event is None:
                                continue
                            if event.event == "complete":
                                return self._complete(event)
                            await self._deliver(event, on_event)
            except httpx.TimeoutException:
                broke = self.api.too_slow("GET", path, STREAM_IDLE_S)
            except httpx.HTTPError as exc:
                broke = self.api.unreachable("GET", path, exc)
            if broke is None:  # the stream ended, and no completion came: is the run over?
                ended = await self._ended(run_id)
                if ended is not None:
                    return ended
            failures += 1
            if failures > RECONNECT_ATTEMPTS:
                raise broke or ServiceUnavailableError(
                    f"the event stream of run {run_id} at {self.api.url} keeps ending before "
                    "the run completes",
                    url=self.api.url,
                )
            await asyncio.sleep(min(0.25 * 2 ** (failures - 1), 4.0))

    def _complete(self, event: ServerSentEvent) -> CompleteMessage:
        message: Message = decode(event.data.encode())
        if not isinstance(message, CompleteMessage):
            raise ProtocolError(f"the `complete` event of {self.api.url} is a {type(message)}")
        return message

    async def _deliver(self, event: ServerSentEvent, on_event: EventCallback | None) -> None:
        if on_event is None:
            return
        message: Message = decode(event.data.encode())
        if not isinstance(message, EventMessage):
            return  # nothing but events precede the completion; a newer server's extras
        result = on_event(message)
        if inspect.isawaitable(result):
            await result

    async def _ended(self, run_id: str) -> CompleteMessage | None:
        """The completion of a run that is over (its stream had nothing more), or ``None``
        while it runs."""
        info = await self.get_run(run_id)
        if info.status == "running":
            return None
        data = await self.api.request(
            "GET", f"/runs/{_segment(run_id)}/wait", params={"timeout_s": self.api.timeout_s}
        )
        return self.api.build("a completion", completion_from_json, data, agent=info.agent)

    async def cancel(self, run_id: str) -> None:
        await self.api.request("POST", f"/runs/{_segment(run_id)}/cancel")

    async def answer(self, run_id: str, text: str) -> None:
        await self.api.request("POST", f"/runs/{_segment(run_id)}/answer", json={"text": text})

    async def get_run(self, run_id: str) -> RunInfo:
        data = await self.api.request("GET", f"/runs/{_segment(run_id)}")
        return self.api.build("a run", run_from_json, data)

    async def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        items = await self.api.pages("/runs", limit=limit)
        return [self.api.build("a run", run_from_json, item) for item in items]


class HttpSecretStore:
    """Secrets over the API (a :class:`~roost.stores.SecretStore`): put, exists, delete.
    Values go in and never come back: :meth:`get` and :meth:`list` are refused."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def put(self, name: str, value: str) -> None:
        await self.api.request("PUT", f"/secrets/{_segment(name)}", json={"value": value})

    async def get(self, name: str) -> str:
        raise InvalidRequestError(
            f"the roost API at {self.api.url} never returns secret values: secret {name!r} "
            "can be set, checked (`roost secret exists`) and deleted through it, not read"
        )

    async def delete(self, name: str) -> None:
        await self.api.request("DELETE", f"/secrets/{_segment(name)}")

    async def exists(self, name: str) -> bool:
        try:
            await self.api.request("GET", f"/secrets/{_segment(name)}")
        except NotFoundError:
            return False
        return True

    async def list(self) -> builtins.list[str]:
        raise InvalidRequestError(
            f"the roost API at {self.api.url} does not list secrets (values are never "
            "returned); check one with `roost secret exists NAME`"
        )


class HttpPlatform:
    """A roost API server seen from a client (a :class:`~roost.platform.PlatformAPI`).
    Close with :meth:`close`."""

    def __init__(self, client: ClientSettings) -> None:
        self.client = client
        self.api = ApiClient(client)
        self.harness = HttpRunControl(self.api)
        self.secrets = HttpSecretStore(self.api)

    @property
    def url(self) -> str:
        return self.api.url

    async def close(self) -> None:
        await self.api.close()

    async def __aenter__(self) -> HttpPlatform:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- agents ----------------------------------------------------------------------------

    async def deploy(
        self, path: Path | str, *, on_output: OutputCallback | None = None
    ) -> AgentRecord:
        """Pack the agent folder and upload it; the server validates it against its
        platform and installs its dependencies. The install's output is not sent back over
        the API: ``on_output`` is not called."""
        bundle, folder = await pack_agent(path)
        return await self.deploy_bundle(bundle, source=str(folder), on_output=on_output)

    async def deploy_bundle(
        self,
        bundle: bytes,
        *,
        source: str = "",
        on_output: OutputCallback | None = None,
        tenant: str | None = None,
    ) -> AgentRecord:
        refuse_tenant(tenant)
        data = await self.api.request(
            "POST",
            "/agents",
            content=bundle,
            params={"source": source[:500] or None},
            headers={"Content-Type": "application/gzip"},
            timeout_s=max(self.api.timeout_s, DEPLOY_TIMEOUT_S),
        )
        return self.api.build("an agent", agent_from_json, data, url=self.url)

    async def get_agent(self, name: str) -> AgentRecord:
        data = await self.api.request("GET", f"/agents/{_segment(name)}")
        return self.api.build("an agent", agent_from_json, data, url=self.url)

    async def list_agents(self) -> list[AgentRecord]:
        items = await self.api.pages("/agents")
        return [self.api.build("an agent", agent_from_json, item, url=self.url) for item in items]

    async def delete_agent(self, name: str) -> None:
        await self.api.request("DELETE", f"/agents/{_segment(name)}")

    # --- runs ------------------------------------------------------------------------------

    async def run(
        self,
        agent: str,
        input: Any,
        *,
        session: str | None = None,
        branch: str | None = None,
        timeout_s: float | None = None,
        on_event: EventCallback | None = None,
        run_id: str | None = None,
        owner: str = "",
    ) -> RunResult:
        """Start the run, then follow its event stream to the end (the server's run
        timeout ends a run that takes too long). ``owner`` is ignored: the server makes the
        token's user the owner."""
        started = await self.start(
            agent, input, session=session, branch=branch, timeout_s=timeout_s, run_id=run_id
        )
        complete = await self.harness.follow(started.run_id, on_event)
        return RunResult(
            session=started.session, branch=complete.branch or started.branch, complete=complete
        )

    async def start(
        self,
        agent: str,
        input: Any,
        *,
        session: str | None = None,
        branch: str | None = None,
        timeout_s: float | None = None,
        run_id: str | None = None,
        owner: str = "",
    ) -> RunStarted:
        body = {
            "agent": agent,
            "input": input,
            "session": session,
            "branch": branch,
            "timeout_s": timeout_s,
            "run_id": run_id,
        }
        data = await self.api.request(
            "POST", "/runs", json={k: v for k, v in body.items() if v is not None or k == "input"}
        )
        info = self.api.build("a run", run_from_json, data)
        return RunStarted(
            session=await self.get_session(info.session), branch=info.branch, run_id=info.id
        )

    # --- sessions --------------------------------------------------------------------------

    async def list_sessions(self, agent: str | None = None, limit: int = 50) -> list[Session]:
        items = await self.api.pages("/sessions", {"agent": agent}, limit=limit)
        return [self.api.build("a session", session_from_json, item) for item in items]

    async def get_session(self, ref: str) -> Session:
        data = await self.api.request("GET", f"/sessions/{_segment(ref)}")
        return self.api.build("a session", session_from_json, data)

    async def list_branches(self, session: str) -> list[Branch]:
        data = await self.api.request("GET", f"/sessions/{_segment(session)}/branches")
        return self.api.build("branches", _branches, data)

    async def session_nodes(self, session: str, branch: str | None = None) -> list[Node]:
        sess = await self.get_session(session)
        items = await self.api.pages(
            f"/sessions/{_segment(sess.id)}/nodes", {"branch": branch or sess.main_branch}
        )
        return [self.api.build("a node", node_from_json, item, session=sess.id) for item in items]

    async def fork(self, session: str, from_node: str, branch: str | None = None) -> Branch:
        body: dict[str, Any] = {"from_node": from_node}
        if branch is not None:
            body["branch"] = branch
        data = await self.api.request("POST", f"/sessions/{_segment(session)}/fork", json=body)
        return self.api.build("a branch", branch_from_json, data)

    async def promote(self, session: str, branch: str) -> None:
        await self.api.request(
            "POST", f"/sessions/{_segment(session)}/promote", json={"branch": branch}
        )

    # --- models ----------------------------------------------------------------------------

    async def list_models(self) -> list[ModelRecord]:
        items = await self.api.pages("/models")
        return [self.api.build("a model", model_from_json, item) for item in items]

    async def add_model(
        self,
        *,
        name: str,
        engine: str,
        target: str,
        kind: str = "chat",
        base_url: str = "",
        api_key_secret: str = "",
        dimension: int = 0,
        replace: bool = False,
    ) -> ModelRecord:
        body = {
            "name": name,
            "engine": engine,
            "target": target,
            "kind": kind,
            "base_url": base_url,
            "api_key_secret": api_key_secret,
            "dimension": dimension,
            "replace": replace,
        }
        data = await self.api.request("POST", "/models", json=body)
        return self.api.build("a model", model_from_json, data)

    async def remove_model(self, name: str) -> None:
        await self.api.request("DELETE", f"/models/{_segment(name)}")

    async def available_models(
        self, engine: str | None = None, base_url: str = ""
    ) -> list[AvailableModel]:
        raise InvalidRequestError(
            f"the models engines can serve (`roost model available`) are not available "
            f"through the API at {self.url}: ask the engine itself, or run the command "
            "where the engines are (local mode, or over gRPC with `harness` in client.toml)"
        )


if TYPE_CHECKING:  # the HTTP platform is a PlatformAPI: mypy checks every method's signature
    from roost.platform._api import PlatformAPI, RunControl
    from roost.stores import SecretStore

    def _check(
        platform: HttpPlatform, runs: HttpRunControl, secrets: HttpSecretStore
    ) -> tuple[PlatformAPI, RunControl, SecretStore]:
        return platform, runs, secrets
