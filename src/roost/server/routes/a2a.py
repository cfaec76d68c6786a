"""``/a2a/{agent}``: each deployed agent as an A2A (v1.0) server, over JSON-RPC.

``GET /a2a/{agent}/.well-known/agent-card.json`` is the agent's card and ``POST
/a2a/{agent}`` its JSON-RPC endpoint. Both need the bearer token, as every route of the API
does: A2A lets a card be public or protected, and until users and tenants exist one token
guards everything, the list of deployed agents and their tools included (a refused client
still learns the scheme from ``WWW-Authenticate: Bearer``). The SDK's dispatcher serves the
JSON-RPC; :mod:`roost.server._a2a` maps it onto runs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from a2a.server.jsonrpc_models import JSONParseError
from a2a.server.request_handlers import build_error_response
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_1_0, VERSION_HEADER
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

from roost.server._a2a import PREFIX, Call, RoostCallContextBuilder, RoostRequestHandler, agent_card
from roost.server._deps import Caller, Platform, needs
from roost.server._schemas import NAME

router = APIRouter(prefix=PREFIX, tags=["a2a"], dependencies=[Depends(needs("runs"))])

AgentName = Annotated[str, Path(pattern=NAME, description="A deployed agent")]

_dispatcher = JsonRpcDispatcher(
    request_handler=RoostRequestHandler(), context_builder=RoostCallContextBuilder()
)


@router.get(
    "/{agent}" + AGENT_CARD_WELL_KNOWN_PATH,
    summary="An agent's A2A agent card",
    description="Built from the agent's manifest; its interface is `POST /a2a/{agent}`.",
)
async def get_agent_card(
    agent: AgentName, request: Request, platform: Platform, caller: Caller
) -> JSONResponse:
    record = await platform.get_agent(agent)
    url = str(request.url_for("a2a_jsonrpc", agent=record.name))
    return JSONResponse(agent_card_to_dict(agent_card(record, url)))


@router.post(
    "/{agent}",
    name="a2a_jsonrpc",
    summary="An agent's A2A JSON-RPC endpoint",
    description=(
        "A2A v1.0 over JSON-RPC 2.0: `SendMessage`, `SendStreamingMessage` (SSE), `GetTask`, "
        "`ListTasks`, `CancelTask`, `SubscribeToTask` (SSE). A task is a run, its `contextId` "
        f"the run's session. Send `{VERSION_HEADER}: {PROTOCOL_VERSION_1_0}`."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    response_model=None,
)
async def a2a_jsonrpc(
    agent: AgentName, request: Request, platform: Platform, caller: Caller
) -> Response:
    body = await request.body()  # first: a body over the limit is a 413 whatever the agent
    record = await platform.get_agent(agent)  # an unknown agent is a 404, not a call
    try:
        json.loads(body)  # the dispatcher parses it again
    except ValueError as exc:  # not JSON, or not UTF-8: a parse error, never a 500
        error: Any = build_error_response(None, JSONParseError(message=str(exc)))
        return JSONResponse(error)
    request.state.roost_a2a = Call(platform=platform, agent=record.name, principal=caller)
    return await _dispatcher.handle_requests(request)
