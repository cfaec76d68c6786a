"""The harness over gRPC: the platform's front door for clients in distributed mode.

:class:`HarnessServicer` serves ``roost.v1.Harness`` from a :class:`Platform` (the harness
role's, with the database and a Temporal client); :class:`RemoteHarness` is its client, with
the same methods as :class:`~roost.runtime.Harness` that the CLI uses, so ``roost run ...``
works unchanged against a deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import msgspec

from roost.protocol import (
    CompleteMessage,
    EventMessage,
    InvalidRequestError,
    RoostError,
    decode,
    encode,
)
from roost.rpc import RpcClient, RpcService, ServicerBase, abort_with, rpc_method
from roost.rpc.wire import (
    Context,
    agent_from_pb,
    agent_to_pb,
    branch_from_pb,
    branch_to_pb,
    harness_pb2_grpc,
    opt,
    session_from_pb,
    session_to_pb,
)
from roost.rpc.wire import harness_pb2 as pb
from roost.runtime import EventCallback, RunInfo, RunResult, RunStarted
from roost.stores import AgentRecord, Branch

if TYPE_CHECKING:
    from roost.platform._local import Platform

_SERVICE = pb.DESCRIPTOR.services_by_name["Harness"].full_name
# a run's stream lasts as long as the run; this bounds a stream whose run was lost
_STREAM_SLACK_S = 120.0
DEPLOY_TIMEOUT_S = 1800.0
"""How long a client waits for a deploy (which installs the agent's dependencies)."""
DEPLOY_LOG_KEY = "roost-deploy-log-bin"
"""Trailing metadata of a Deploy reply: the end of the install's output (binary: ``-bin``)."""
DEPLOY_LOG_BYTES = 3500  # gRPC caps metadata at 8 KB by default


def _run_input(request: pb.RunRequest) -> Any:
    try:
        return msgspec.json.decode(request.input_json) if request.input_json else None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"the run's input is not JSON: {exc}") from None


def _run_info_to_pb(info: RunInfo) -> pb.RunInfo:
    return pb.RunInfo(
        id=info.id,
        agent=info.agent,
        session=info.session,
        branch=info.branch,
        status=info.status,
        started_at=info.started_at,
        closed_at=info.closed_at,
        question=info.question,
    )


def _run_info_from_pb(message: pb.RunInfo) -> RunInfo:
    return RunInfo(
        id=message.id,
        agent=message.agent,
        session=message.session,
        branch=message.branch,
        status=message.status,  # type: ignore[arg-type]  # the server sent a RunStatus
        started_at=message.started_at,
        closed_at=opt(message, "closed_at"),
        question=message.question,
    )


class HarnessServicer(ServicerBase, harness_pb2_grpc.HarnessServicer):
    """Serves ``roost.v1.Harness`` from ``platform``."""

    role = "harness"
    service_name = _SERVICE

    def __init__(self, platform: Platform, *, node: str | None = None) -> None:
        super().__init__(node=node)
        self.platform = platform

    def add_to_server(self, server: grpc.aio.Server) -> None:
        harness_pb2_grpc.add_HarnessServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    @rpc_method
    async def Deploy(self, request: pb.DeployRequest, context: Context) -> pb.DeployReply:
        output: deque[str] = deque(maxlen=200)
        record = await self.platform.deploy_bundle(
            request.bundle, source=request.source, on_output=output.append
        )
        # the install's output, at the end: the last lines that fit in trailing metadata
        tail = "\n".join(output).encode()[-DEPLOY_LOG_BYTES:]
        context.set_trailing_metadata(((DEPLOY_LOG_KEY, tail),))
        return pb.DeployReply(agent=agent_to_pb(record))

    @rpc_method
    async def DeleteAgent(
        self, request: pb.HarnessDeleteAgentRequest, context: Context
    ) -> pb.HarnessDeleteAgentReply:
        await self.platform.delete_agent(request.name)
        return pb.HarnessDeleteAgentReply()

    async def Run(self, request: pb.RunRequest, context: Context) -> AsyncIterator[pb.RunUpdate]:
        try:
            agent_input = _run_input(request)
        except InvalidRequestError as exc:
            await abort_with(context, exc)
        async for update in self._stream(
            context,
            request.events,
            lambda on_event: self.platform.run(
                request.agent,
                agent_input,
                session=opt(request, "session"),
                branch=opt(request, "branch"),
                timeout_s=opt(request, "timeout_s"),
                run_id=opt(request, "run_id"),
                on_event=on_event,
                owner=request.owner,
            ),
        ):
            yield update

    @rpc_method
    async def Start(self, request: pb.RunRequest, context: Context) -> pb.RunStarted:
        started = await self.platform.start(
            request.agent,
            _run_input(request),
            session=opt(request, "session"),
            branch=opt(request, "branch"),
            timeout_s=opt(request, "timeout_s"),
            run_id=opt(request, "run_id"),
            owner=request.owner,
        )
        return pb.RunStarted(
            session=session_to_pb(started.session), branch=started.branch, run_id=started.run_id
        )

    async def Wait(self, request: pb.WaitRequest, context: Context) -> AsyncIterator[pb.RunUpdate]:
        harness = self.platform.harness

        async def wait(on_event: EventCallback | None) -> RunResult:
            info = await harness.get_run(request.run_id)
            complete = await harness.wait(
                request.run_id,
                session=info.session,
                timeout_s=opt(request, "timeout_s"),
                on_event=on_event,
            )
            session = await self.platform.get_session(info.session)
            return RunResult(session=session, branch=info.branch, complete=complete)

        async for update in self._stream(context, request.events, wait):
            yield update

    async def _stream(
        self, context: Context, events: bool, start: Any
    ) -> AsyncIterator[pb.RunUpdate]:
        """Run ``start(on_event)`` and stream its events (if asked), then its result. A
        client that goes away stops the stream, never the run: runs are durable."""
        queue: asyncio.Queue[EventMessage] = asyncio.Queue()
        task: asyncio.Task[RunResult] = asyncio.ensure_future(
            start(queue.put_nowait if events else None)
        )
        try:
            while not task.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield pb.RunUpdate(event_json=encode(getter.result()))
                else:
                    getter.cancel()
            while not queue.empty():
                yield pb.RunUpdate(event_json=encode(queue.get_nowait()))
            try:
                result = task.result()
            except RoostError as exc:
                await abort_with(context, exc)
            yield pb.RunUpdate(
                done=pb.RunDone(
                    session=session_to_pb(result.session),
                    branch=result.branch,
                    complete_json=encode(result.complete),
                )
            )
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    @rpc_method
    async def Cancel(self, request: pb.RunRef, context: Context) -> pb.RunAck:
        await self.platform.harness.cancel(request.run_id)
        return pb.RunAck()

    @rpc_method
    async def Answer(self, request: pb.AnswerRequest, context: Context) -> pb.RunAck:
        await self.platform.harness.answer(request.run_id, request.text)
        return pb.RunAck()

    @rpc_method
    async def GetRun(self, request: pb.RunRef, context: Context) -> pb.RunInfo:
        return _run_info_to_pb(await self.platform.harness.get_run(request.run_id))

    @rpc_method
    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.RunList:
        runs = await self.platform.harness.list_runs(limit=request.limit or 50)
        return pb.RunList(runs=[_run_info_to_pb(info) for info in runs])

    @rpc_method
    async def Fork(self, request: pb.HarnessForkRequest, context: Context) -> pb.HarnessBranchReply:
        branch = await self.platform.fork(
            request.session, request.from_node, opt(request, "branch")
        )
        return pb.HarnessBranchReply(branch=branch_to_pb(branch))

    @rpc_method
    async def Promote(
        self, request: pb.HarnessPromoteRequest, context: Context
    ) -> pb.HarnessPromoteReply:
        await self.platform.promote(request.session, request.branch)
        return pb.HarnessPromoteReply()


class RemoteHarness(RpcClient):
    """The harness service at ``address``, with the methods of
    :class:`~roost.runtime.Harness` that clients use (``run``, ``wait``, ``cancel``, ...)."""

    service_name = _SERVICE

    async def deploy(
        self,
        bundle: bytes,
        source: str,
        *,
        on_output: Callable[[str], None] | None = None,
        timeout_s: float = DEPLOY_TIMEOUT_S,
    ) -> AgentRecord:
        """Deploy a bundle. The deployment installs the agent's dependencies, which may take
        long: the call waits up to ``timeout_s`` (the server's own ``install_timeout_s``
        bounds the install). ``on_output`` gets the install's last output lines at the end."""
        request = pb.DeployRequest(bundle=bundle, source=source)
        timeout = max(self.timeout_s, timeout_s)
        method = self._open_channel().unary_unary(
            f"/{self.service_name}/Deploy",
            request_serializer=pb.DeployRequest.SerializeToString,
            response_deserializer=pb.DeployReply.FromString,
        )
        call = method(request, timeout=timeout, metadata=self._metadata)
        try:
            reply: pb.DeployReply = await call
            trailing = await call.trailing_metadata()
        except grpc.RpcError as exc:
            raise self._error(exc, "Deploy", timeout) from None
        if on_output is not None:
            for key, value in trailing or ():
                if key == DEPLOY_LOG_KEY and isinstance(value, bytes) and value:
                    for line in value.decode(errors="replace").splitlines():
                        on_output(line)
        return agent_from_pb(reply.agent)

    async def delete_agent(self, name: str) -> None:
        request = pb.HarnessDeleteAgentRequest(name=name)
        await self.call("DeleteAgent", request, pb.HarnessDeleteAgentReply)

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
        request = pb.RunRequest(
            agent=agent,
            input_json=msgspec.json.encode(input),
            session=session,
            branch=branch,
            timeout_s=timeout_s,
            run_id=run_id,
            events=on_event is not None,
            owner=owner,
        )
        # no deadline shorter than the run itself: the server's run timeout ends it
        deadline = (timeout_s or 24 * 3600.0) + _STREAM_SLACK_S
        return await self._stream("Run", request, on_event, deadline)

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
        request = pb.RunRequest(
            agent=agent,
            input_json=msgspec.json.encode(input),
            session=session,
            branch=branch,
            timeout_s=timeout_s,
            run_id=run_id,
            owner=owner,
        )
        reply = await self.call("Start", request, pb.RunStarted)
        return RunStarted(
            session=session_from_pb(reply.session), branch=reply.branch, run_id=reply.run_id
        )

    async def wait(
        self,
        run_id: str,
        *,
        session: str = "",
        timeout_s: float | None = None,
        on_event: EventCallback | None = None,
    ) -> CompleteMessage:
        """Wait for a started run (``session`` is accepted for :class:`Harness` parity)."""
        request = pb.WaitRequest(run_id=run_id, timeout_s=timeout_s, events=on_event is not None)
        deadline = (timeout_s or 24 * 3600.0) + _STREAM_SLACK_S
        return (await self._stream("Wait", request, on_event, deadline)).complete

    async def _stream(
        self, method: str, request: Any, on_event: EventCallback | None, deadline: float
    ) -> RunResult:
        updates = self.stream(method, request, pb.RunUpdate, timeout_s=deadline)
        async with contextlib.aclosing(updates):
            async for update in updates:
                if update.HasField("event_json"):
                    if on_event is not None:
                        result = on_event(decode(update.event_json, EventMessage))
                        if result is not None:
                            await result
                    continue
                done = update.done
                return RunResult(
                    session=session_from_pb(done.session),
                    branch=done.branch,
                    complete=decode(done.complete_json, CompleteMessage),
                )
        raise InvalidRequestError(f"{self.target}: the {method} stream ended without a result")

    async def cancel(self, run_id: str) -> None:
        await self.call("Cancel", pb.RunRef(run_id=run_id), pb.RunAck)

    async def answer(self, run_id: str, text: str) -> None:
        await self.call("Answer", pb.AnswerRequest(run_id=run_id, text=text), pb.RunAck)

    async def get_run(self, run_id: str) -> RunInfo:
        return _run_info_from_pb(await self.call("GetRun", pb.RunRef(run_id=run_id), pb.RunInfo))

    async def list_runs(self, *, limit: int = 50) -> list[RunInfo]:
        reply = await self.call("ListRuns", pb.ListRunsRequest(limit=limit), pb.RunList)
        return [_run_info_from_pb(info) for info in reply.runs]

    async def fork(self, session: str, from_node: str, branch: str | None = None) -> Branch:
        request = pb.HarnessForkRequest(session=session, from_node=from_node, branch=branch)
        return branch_from_pb((await self.call("Fork", request, pb.HarnessBranchReply)).branch)

    async def promote(self, session: str, branch: str) -> None:
        request = pb.HarnessPromoteRequest(session=session, branch=branch)
        await self.call("Promote", request, pb.HarnessPromoteReply)


def coordination_servicers(
    platform: Platform, roles: list[str], *, node: str | None = None
) -> list[RpcService]:
    """The gRPC servicers of coordination-service ``roles`` (``registry``, ``state``,
    ``secret``, ``catalog``, ``harness``) over ``platform``'s stores and harness."""
    from roost.rpc import STORE_ROLES, CatalogServicer, store_servicers

    factories: dict[str, Callable[[], RpcService]] = {
        "catalog": lambda: CatalogServicer(platform.available_models, node=node),
        "harness": lambda: HarnessServicer(platform, node=node),
    }
    unknown = sorted(set(roles) - set(factories) - set(STORE_ROLES))
    if unknown:
        raise ValueError(f"not coordination services: {', '.join(unknown)}")
    return [
        factories[role]()
        if role in factories
        else store_servicers(platform.stores, [role], node=node)[0]
        for role in roles
    ]
