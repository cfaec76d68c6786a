"""``/api/v1/agents``: deploy (upload a bundle), list, get, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from roost.server._deps import Caller, Page, PageParams, Platform, ServerStateDep, needs, page_of
from roost.server._errors import ApiError
from roost.server._schemas import NAME, Agent

router = APIRouter(
    prefix="/api/v1/agents", tags=["agents"], dependencies=[Depends(needs("agents"))]
)

AgentName = Annotated[str, Path(pattern=NAME)]

BUNDLE_TYPES = ("application/gzip", "application/x-gzip", "application/octet-stream")
_BINARY = {"type": "string", "format": "binary"}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Deploy an agent",
    description=(
        "The body is the agent folder as a gzipped tar (`roost.agents.pack_folder`; "
        "`tar czf - -C FOLDER .` works too). It is validated against the platform, its "
        "dependencies are installed, and it becomes the agent's next version."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": _BINARY} for t in BUNDLE_TYPES},
        }
    },
)
async def deploy_agent(
    request: Request,
    state: ServerStateDep,
    platform: Platform,
    caller: Caller,
    source: Annotated[str, Query(max_length=500, description="The folder's name, for errors")] = "",
) -> Agent:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in BUNDLE_TYPES:
        raise ApiError(
            415,
            f"send the agent bundle as one of {', '.join(BUNDLE_TYPES)}, not {kind or 'nothing'}",
        )
    bundle = await request.body()
    if not bundle:
        raise ApiError(400, "the body is empty: send the agent folder as a gzipped tar")
    record = await platform.deploy_bundle(bundle, source=source or "agent bundle")
    await state.audit(caller, "agent.deploy", record.name, version=record.version)
    return Agent.of(record)


@router.get("", summary="List deployed agents")
async def list_agents(platform: Platform, caller: Caller, page: PageParams) -> Page[Agent]:
    records = sorted(await platform.list_agents(), key=lambda r: r.name)
    return page_of([Agent.of(r) for r in records], page)


@router.get("/{name}", summary="The latest version of an agent")
async def get_agent(name: AgentName, platform: Platform, caller: Caller) -> Agent:
    return Agent.of(await platform.get_agent(name))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete an agent")
async def delete_agent(
    name: AgentName, state: ServerStateDep, platform: Platform, caller: Caller
) -> None:
    await platform.delete_agent(name)
    await state.audit(caller, "agent.delete", name)
