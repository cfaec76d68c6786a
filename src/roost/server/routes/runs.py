"""``/api/v1/runs``: start, get, wait, cancel, answer, list, and stream a run's events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, status
from sse_starlette import EventSourceResponse

from roost.protocol import ServiceTimeoutError
from roost.server._deps import Caller, Page, PageParams, Platform, ServerStateDep, needs, page_of
from roost.server._schemas import RUN_ID, Answer, Completion, Run, RunStart
from roost.server._stream import RunEventStream

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], dependencies=[Depends(needs("runs"))])

RunId = Annotated[str, Path(pattern=RUN_ID)]
RUN_STATUSES = ("running", "completed", "failed", "cancelled", "timed_out", "unknown")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a run",
    description="Returns at once; follow the run with `/events` or `/wait`.",
)
async def start_run(body: RunStart, platform: Platform, caller: Caller) -> Run:
    started = await platform.start(
        body.agent,
        body.input,
        session=body.session,
        branch=body.branch,
        timeout_s=body.timeout_s,
        run_id=body.run_id,
    )
    return Run.of(await platform.harness.get_run(started.run_id))


@router.get("", summary="List runs, newest first")
async def list_runs(
    platform: Platform,
    caller: Caller,
    page: PageParams,
    agent: Annotated[str | None, Query(max_length=128)] = None,
    session: Annotated[str | None, Query(max_length=200)] = None,
    run_status: Annotated[
        str | None, Query(alias="status", pattern="^(" + "|".join(RUN_STATUSES) + ")$")
    ] = None,
) -> Page[Run]:
    # filters narrow what the executor lists; read enough to fill the page after them
    wanted = page.fetch if not (agent or session or run_status) else max(page.fetch * 4, 1000)
    runs = await platform.harness.list_runs(limit=wanted)
    chosen = [
        Run.of(r)
        for r in runs
        if (agent is None or r.agent == agent)
        and (session is None or r.session == session)
        and (run_status is None or r.status == run_status)
    ]
    return page_of(chosen, page)


@router.get("/{run_id}", summary="One run")
async def get_run(run_id: RunId, platform: Platform, caller: Caller) -> Run:
    return Run.of(await platform.harness.get_run(run_id))


@router.get(
    "/{run_id}/wait",
    summary="Wait for a run to end",
    description="504 if it is still running after `timeout_s` (it goes on running).",
)
async def wait_run(
    run_id: RunId,
    platform: Platform,
    caller: Caller,
    timeout_s: Annotated[float, Query(gt=0, le=3600)] = 60.0,
) -> Completion:
    info = await platform.harness.get_run(run_id)
    try:
        complete = await platform.harness.wait(run_id, session=info.session, timeout_s=timeout_s)
    except TimeoutError:
        raise ServiceTimeoutError(
            f"run {run_id} did not end within {timeout_s:g}s; it is still running"
        ) from None
    return Completion.of(complete)


@router.post("/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED, summary="Cancel a run")
async def cancel_run(run_id: RunId, platform: Platform, caller: Caller) -> Run:
    await platform.harness.cancel(run_id)
    return Run.of(await platform.harness.get_run(run_id))


@router.post("/{run_id}/answer", summary="Answer the question a run waits on")
async def answer_run(run_id: RunId, body: Answer, platform: Platform, caller: Caller) -> Run:
    await platform.harness.answer(run_id, body.text)
    return Run.of(await platform.harness.get_run(run_id))


@router.get(
    "/{run_id}/events",
    summary="Stream a run's events (SSE)",
    description=(
        "Server-sent events: each durable event and the final `complete` carry an `id`; "
        "reconnect with `Last-Event-ID` to resume after it (on any replica). `token` events "
        "are live only. Comment lines keep an idle stream alive."
    ),
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def run_events(
    run_id: RunId,
    platform: Platform,
    caller: Caller,
    state: ServerStateDep,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> EventSourceResponse:
    info = await platform.harness.get_run(run_id)  # an unknown run is a 404, not a stream
    stream = RunEventStream(platform, info, last_event_id)
    return EventSourceResponse(stream.events(), ping=state.config.heartbeat_s)
