"""``/api/v1/sessions``: list, get, branches, nodes, fork, promote."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from roost.server._deps import Caller, Page, PageParams, Platform, needs, page_of
from roost.server._schemas import BranchOut, Fork, NodeOut, Promote, SessionOut

router = APIRouter(
    prefix="/api/v1/sessions", tags=["sessions"], dependencies=[Depends(needs("runs"))]
)

SessionRef = Annotated[str, Path(min_length=1, max_length=200, description="Name or id")]


@router.get("", summary="List sessions, most recently active first")
async def list_sessions(
    platform: Platform,
    caller: Caller,
    page: PageParams,
    agent: Annotated[str | None, Query(max_length=128)] = None,
) -> Page[SessionOut]:
    sessions = await platform.list_sessions(agent=agent, limit=page.fetch)
    return page_of([SessionOut.of(s) for s in sessions], page)


@router.get("/{session}", summary="One session")
async def get_session(session: SessionRef, platform: Platform, caller: Caller) -> SessionOut:
    return SessionOut.of(await platform.get_session(session))


@router.get("/{session}/branches", summary="A session's branches")
async def list_branches(session: SessionRef, platform: Platform, caller: Caller) -> list[BranchOut]:
    return [BranchOut.of(b) for b in await platform.list_branches(session)]


@router.get(
    "/{session}/nodes",
    summary="The nodes of one branch, oldest first",
    description="`after` (a node's `seq`) continues from that node.",
)
async def session_nodes(
    session: SessionRef,
    platform: Platform,
    caller: Caller,
    page: PageParams,
    branch: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> Page[NodeOut]:
    nodes = await platform.session_nodes(session, branch)
    if after is not None:
        nodes = [n for n in nodes if n.seq > after]
    return page_of([NodeOut.of(n) for n in nodes], page)


@router.post("/{session}/fork", status_code=201, summary="Branch a session at a node")
async def fork_session(
    session: SessionRef, body: Fork, platform: Platform, caller: Caller
) -> BranchOut:
    return BranchOut.of(await platform.fork(session, body.from_node, body.branch))


@router.post("/{session}/promote", summary="Make a branch the session's main branch")
async def promote_branch(
    session: SessionRef, body: Promote, platform: Platform, caller: Caller
) -> SessionOut:
    await platform.promote(session, body.branch)
    return SessionOut.of(await platform.get_session(session))
