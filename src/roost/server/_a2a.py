"""A2A (Agent2Agent protocol v1.0) over roost runs: agent cards and a request handler.

The a2a-sdk's :class:`~a2a.server.routes.jsonrpc_dispatcher.JsonRpcDispatcher` parses and
validates JSON-RPC, checks the ``A2A-Version`` header, maps errors and streams SSE; it calls
:class:`RoostRequestHandler`, the SDK's :class:`~a2a.server.request_handlers.RequestHandler`
interface implemented over the platform. The SDK's default handler is not used: it runs
agents in this process and keeps live tasks in an in-memory registry, while roost runs
them on its executor and must answer the same from any replica.

The mapping, read from the platform on every call (nothing is kept here):

* a task is a run: the task id is the run id, its ``contextId`` the run's session. A message
  without ``taskId`` starts a run of the endpoint's agent (in the session ``contextId``
  names, or a new one); its text parts are the input (a lone data part: that value).
* the task's state is the run's: running is ``working``, or ``input-required`` while the
  run waits on ``ctx.ask`` (the question is the status message); completed, failed and
  timed out (``failed``), cancelled (``canceled``). A message naming a task that waits for
  input answers the question, and the task goes on.
* the task's history is the session DAG's record of the run: its input, questions and
  answers, and the reply; its one artifact (``output``) is the run's output.
* a stream follows the run's events (progress as ``working`` status updates, tokens as
  chunks of the ``output`` artifact) and ends when the task completes or needs input.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from a2a.auth.user import User
from a2a.helpers import get_data_parts, get_text_parts, new_data_part, new_text_part
from a2a.server.context import ServerCallContext
from a2a.server.events import Event
from a2a.server.request_handlers import RequestHandler
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Artifact,
    CancelTaskRequest,
    ContentTypeNotSupportedError,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    HTTPAuthSecurityScheme,
    InternalError,
    InvalidParamsError,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    PushNotificationNotSupportedError,
    Role,
    SecurityRequirement,
    SecurityScheme,
    SendMessageRequest,
    StringList,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    UnsupportedOperationError,
)
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol
from a2a.utils.errors import A2AError
from a2a.utils.proto_utils import validate_proto_required_fields
from a2a.utils.task import apply_history_length, validate_history_length, validate_page_size
from starlette.requests import Request

from roost.auth import Principal
from roost.platform import PlatformAPI
from roost.protocol import (
    CompleteMessage,
    ErrorCode,
    EventMessage,
    NotFoundError,
    RoostError,
    ServiceTimeoutError,
)
from roost.runtime import RunInfo
from roost.server._follow import LiveRun
from roost.server._runs_io import text_of
from roost.stores import AgentRecord, Node

PREFIX = "/a2a"
"""Agent ``name``'s JSON-RPC endpoint is ``/a2a/{name}``; its card is under it."""

OUTPUT_ARTIFACT = "output"
"""The id of the artifact that holds a task's output (the run's reply)."""

MODES = ["text/plain", "application/json"]
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_TERMINAL = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_REJECTED,
}
_BY_STATUS = {
    "running": TaskState.TASK_STATE_WORKING,
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "timed_out": TaskState.TASK_STATE_FAILED,
    "cancelled": TaskState.TASK_STATE_CANCELED,
}
_WORKING_EVENTS = ("progress", "step", "status")
_CANCEL_WAIT_S = 10.0
_IDLE_S = 0.5
_IDLE_MAX_S = 30.0
_LIST_READ = 1000


# --- the agent card -------------------------------------------------------------------------


def agent_card(record: AgentRecord, url: str) -> AgentCard:
    """The card of deployed agent ``record``, whose JSON-RPC endpoint is ``url``: its
    manifest's name, description and version, one skill for the agent and one per tool."""
    manifest = record.manifest
    name = str(manifest.get("name") or record.name)
    description = str(manifest.get("description") or "") or f"The roost agent {name}"
    skills = [
        AgentSkill(
            id=name,
            name=name,
            description=description,
            tags=["roost", str(manifest.get("runtime", ""))],
            input_modes=MODES,
            output_modes=MODES,
        )
    ]
    for tool in manifest.get("tools") or []:
        tool_name = str(tool.get("name", "")) if isinstance(tool, dict) else str(tool)
        if tool_name:
            about = str(tool.get("description") or "") if isinstance(tool, dict) else ""
            skills.append(
                AgentSkill(
                    id=f"{name}.{tool_name}",
                    name=tool_name,
                    description=about or f"The tool {tool_name} of {name}",
                    tags=["tool"],
                )
            )
    return AgentCard(
        name=name,
        description=description,
        version=f"{manifest.get('version') or '0.1.0'}+deploy.{record.version}",
        supported_interfaces=[
            AgentInterface(
                url=url,
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_1_0,
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        security_schemes={
            "bearer": SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer", description="The roost API token"
                )
            )
        },
        security_requirements=[SecurityRequirement(schemes={"bearer": StringList()})],
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=skills,
    )


# --- the call context -----------------------------------------------------------------------


class PrincipalUser(User):
    """A roost principal as the SDK's user."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self.principal.id


@dataclass(frozen=True)
class Call:
    """What one A2A call acts on: the platform, the endpoint's agent, the caller."""

    platform: PlatformAPI
    agent: str
    principal: Principal


class RoostCallContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's call context (with the request headers it checks the version in) plus
    the :class:`Call`, which the route authenticated and put on ``request.state``."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        call: Call = request.state.roost_a2a
        context.state["roost"] = call
        context.user = PrincipalUser(call.principal)
        return context


def _call(context: ServerCallContext) -> Call:
    call = context.state.get("roost")
    if not isinstance(call, Call):
        raise InternalError(message="the A2A call has no roost context")
    return call


@contextlib.contextmanager
def _a2a_errors() -> Iterator[None]:
    """Roost errors as A2A errors (else the dispatcher answers each as an internal error)."""
    try:
        yield
    except A2AError:
        raise
    except RoostError as exc:
        if exc.code in (ErrorCode.INVALID_REQUEST, ErrorCode.NOT_FOUND):
            raise InvalidParamsError(message=exc.message) from exc
        raise InternalError(message=f"{exc.code}: {exc.message}") from exc


# --- runs as tasks --------------------------------------------------------------------------


def input_of(message: Message) -> Any:
    """A run's input from a message: its text (parts joined by newlines), a lone data
    part's value, or ``{"prompt": text, "data": ...}`` for both. File parts are refused."""
    if any(p.HasField("raw") or p.HasField("url") for p in message.parts):
        raise ContentTypeNotSupportedError(
            message="roost agents take text and data parts, not files"
        )
    texts = get_text_parts(message.parts)
    data = [_whole_numbers(d) for d in get_data_parts(message.parts)]
    if not texts and not data:
        raise InvalidParamsError(message="the message has no text or data part")
    if not data:
        return "\n".join(texts)
    value = data[0] if len(data) == 1 else data
    return {"prompt": "\n".join(texts), "data": value} if texts else value


def _answer_of(message: Message) -> str:
    value = input_of(message)
    return value if isinstance(value, str) else json.dumps(value)


def _whole_numbers(value: Any) -> Any:
    # protobuf's Value keeps every number as a double: 3 arrives as 3.0
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


def _parts_of(value: Any) -> list[Part]:
    """A value as parts: its text (:func:`text_of`), and the value itself unless a string."""
    if value is None:
        return [new_text_part("", media_type="text/plain")]
    parts = [new_text_part(text_of(value), media_type="text/plain")]
    if not isinstance(value, str):
        parts.append(new_data_part(value, media_type="application/json"))
    return parts


def _message(message_id: str, role: Role, parts: list[Part], info: RunInfo) -> Message:
    return Message(
        message_id=message_id, role=role, parts=parts, task_id=info.id, context_id=info.session
    )


def _text(message_id: str, text: str, info: RunInfo) -> Message:
    return _message(message_id, Role.ROLE_AGENT, [new_text_part(text)], info)


@dataclass(frozen=True)
class Outcome:
    """How a run ended, from its completion (live) or its ``complete`` node (recorded)."""

    id: str
    ok: bool
    output: Any
    error: dict[str, Any]
    timestamp: float

    @classmethod
    def of_node(cls, node: Node) -> Outcome:
        content = node.content
        return cls(
            id=str(content.get("id", "")),
            ok=bool(content.get("ok", True)),
            output=content.get("output"),
            error=dict(content.get("error") or {}),
            timestamp=float(content.get("timestamp") or node.created_at),
        )

    @classmethod
    def of_complete(cls, complete: CompleteMessage) -> Outcome:
        error = msgspec.to_builtins(complete.error) if complete.error is not None else {}
        return cls(complete.id, complete.ok, complete.output, error, complete.timestamp)

    @property
    def state(self) -> TaskState:
        if self.ok and not self.error:
            return TaskState.TASK_STATE_COMPLETED
        if self.error.get("code") == ErrorCode.CANCELLED:
            return TaskState.TASK_STATE_CANCELED
        return TaskState.TASK_STATE_FAILED

    def status(self, info: RunInfo) -> TaskStatus:
        status = TaskStatus(state=self.state)
        if self.state != TaskState.TASK_STATE_COMPLETED:
            message = str(self.error.get("message") or "the run failed")
            status.message.CopyFrom(_text(self.id, message, info))
        status.timestamp.FromNanoseconds(int(self.timestamp * 1e9))
        return status

    def artifact(self) -> Artifact:
        return Artifact(artifact_id=OUTPUT_ARTIFACT, name="output", parts=_parts_of(self.output))


def task_of(info: RunInfo, nodes: list[Node]) -> Task:
    """Run ``info`` as a task, with what ``nodes`` (its branch of the DAG) recorded of it."""
    history: list[Message] = []
    outcome: Outcome | None = None
    pending_question = ""
    last_progress: EventNode | None = None
    latest = info.started_at
    for node in nodes:
        content = node.content
        if node.kind == "invoke" and content.get("id") == info.id:
            parts = _parts_of(content.get("input"))
            history.append(_message(info.id, Role.ROLE_USER, parts, info))
        elif content.get("correlation_id") != info.id:
            continue
        elif node.kind == "event":
            event = EventNode.of(node)
            latest = max(latest, event.timestamp)
            if event.type == "question":
                pending_question = event.id
                history.append(_text(event.id, event.text, info))
            elif event.type == "answer":
                pending_question = ""
                parts = [new_text_part(event.text)]
                history.append(_message(event.id, Role.ROLE_USER, parts, info))
            elif event.type in _WORKING_EVENTS:
                last_progress = event
        elif node.kind == "complete":
            outcome = Outcome.of_node(node)
    task = Task(id=info.id, context_id=info.session, history=history)
    task.metadata.update({"agent": info.agent, "branch": info.branch})
    if outcome is not None:
        task.status.CopyFrom(outcome.status(info))
        if outcome.ok:
            task.artifacts.append(outcome.artifact())
            history_reply = _message(outcome.id, Role.ROLE_AGENT, _parts_of(outcome.output), info)
            task.history.append(history_reply)
        return task
    state = _BY_STATUS.get(info.status, TaskState.TASK_STATE_UNSPECIFIED)
    status = TaskStatus(state=state)
    if info.status == "running" and info.question:
        status.state = TaskState.TASK_STATE_INPUT_REQUIRED
        question_id = pending_question or f"{info.id}.question"
        status.message.CopyFrom(_text(question_id, info.question, info))
    elif info.status == "running" and last_progress is not None:
        status.message.CopyFrom(_text(last_progress.id, last_progress.text, info))
    status.timestamp.FromNanoseconds(int((info.closed_at or latest) * 1e9))
    task.status.CopyFrom(status)
    return task


@dataclass(frozen=True)
class EventNode:
    """One durable event of a run (live from the bus or recorded in the DAG)."""

    id: str
    type: str
    data: dict[str, Any]
    timestamp: float

    @classmethod
    def of(cls, node: Node) -> EventNode:
        content = node.content
        return cls(
            id=str(content.get("id", "")),
            type=str(content.get("type", "")),
            data=dict(content.get("data") or {}),
            timestamp=float(content.get("timestamp") or node.created_at),
        )

    @classmethod
    def of_message(cls, event: EventMessage) -> EventNode:
        return cls(event.id, event.type, dict(event.data), event.timestamp)

    @property
    def text(self) -> str:
        for key in ("question", "answer", "message", "text"):
            value = self.data.get(key)
            if isinstance(value, str):
                return value
        return json.dumps(self.data)


async def follow(
    platform: PlatformAPI, info: RunInfo, after: str | None
) -> AsyncGenerator[EventNode | CompleteMessage]:
    """Run ``info``'s events after event ``after`` (all when ``None``), then its completion.

    The DAG's record comes first, then the live events (tokens, which are live only, too).
    When no live event comes for a while (half a second, doubling up to 30 s), the record
    is read again, so an event emitted while the live subscription was starting is not lost
    (a question may be the run's last event for an hour); nothing is sent twice.
    """
    sent: set[str] = set()

    async def recorded() -> list[EventNode]:
        nodes = await platform.session_nodes(info.session, info.branch)
        mine = [
            EventNode.of(n)
            for n in nodes
            if n.kind == "event" and n.content.get("correlation_id") == info.id
        ]
        ids = [e.id for e in mine]
        if after is not None and after in ids:
            mine = mine[ids.index(after) + 1 :]
        fresh = [e for e in mine if e.id not in sent]
        sent.update(e.id for e in fresh)
        return fresh

    def live(event: EventMessage) -> EventNode | None:
        if event.type == "token":  # a model call's id, not the run's: the session's run
            return EventNode.of_message(event)
        if event.correlation_id != info.id or event.id in sent:
            return None
        sent.add(event.id)
        return EventNode.of_message(event)

    async with LiveRun(
        platform, info.id, info.session, idle_s=_IDLE_S, idle_max_s=_IDLE_MAX_S
    ) as stream:
        for event in await recorded():
            yield event
        async for item in stream:
            if isinstance(item, CompleteMessage):
                for event in await recorded():
                    yield event
                yield item
                return
            if item is None:  # quiet: anything recorded that the subscription missed
                for event in await recorded():
                    yield event
                continue
            found = live(item)
            if found is not None:
                yield found


# --- the request handler --------------------------------------------------------------------


class RoostRequestHandler(RequestHandler):
    """A2A's operations on roost runs (see the module docstring). Holds no state: each
    call reads the platform of its :class:`Call`, so any replica answers any call."""

    # -- tasks

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task:
        validate_proto_required_fields(params)
        validate_history_length(params)
        with _a2a_errors():
            call = _call(context)
            task = await self._task(call, await self._run(call, params.id))
        return apply_history_length(task, params)

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        validate_proto_required_fields(params)
        validate_history_length(params)
        page_size = params.page_size if params.HasField("page_size") else 50
        validate_page_size(page_size)
        offset = _offset_of(params.page_token)
        filtered = bool(params.status) or params.HasField("status_timestamp_after")
        with _a2a_errors():
            call = _call(context)
            runs = await call.platform.harness.list_runs(limit=_LIST_READ)
            runs = [r for r in runs if r.agent == call.agent]
            if params.context_id:
                runs = [r for r in runs if r.session == params.context_id]
            total = len(runs)
            if not filtered:  # only the page's tasks need their records read
                runs = runs[offset : offset + page_size]
            nodes: dict[tuple[str, str], list[Node]] = {}
            tasks: list[Task] = []
            for info in runs:
                key = (info.session, info.branch)
                if key not in nodes:
                    nodes[key] = await call.platform.session_nodes(*key)
                task = task_of(info, nodes[key])
                if params.status and task.status.state != params.status:
                    continue
                after = params.status_timestamp_after
                if params.HasField("status_timestamp_after") and (
                    task.status.timestamp.ToNanoseconds() < after.ToNanoseconds()
                ):
                    continue
                tasks.append(task)
        if filtered:
            total = len(tasks)
            tasks = tasks[offset : offset + page_size]
        for task in tasks:
            if not params.include_artifacts:
                task.ClearField("artifacts")
            limited = apply_history_length(task, params)
            if limited is not task:
                task.CopyFrom(limited)
        more = total > offset + page_size
        return ListTasksResponse(
            tasks=tasks,
            next_page_token=_token_of(offset + page_size) if more else "",
            page_size=page_size,
            total_size=total,
        )

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task:
        validate_proto_required_fields(params)
        with _a2a_errors():
            call = _call(context)
            info = await self._run(call, params.id)
            task = await self._task(call, info)
            if task.status.state in _TERMINAL:
                raise TaskNotCancelableError(
                    message=f"task {info.id} is {TaskState.Name(task.status.state)}"
                )
            harness = call.platform.harness
            await harness.cancel(info.id)
            with contextlib.suppress(TimeoutError, ServiceTimeoutError):
                await harness.wait(info.id, session=info.session, timeout_s=_CANCEL_WAIT_S)
            return await self._task(call, await harness.get_run(info.id))

    # -- messages

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        validate_proto_required_fields(params)
        validate_history_length(params.configuration)
        with _a2a_errors():
            call = _call(context)
            info, after, _ = await self._deliver(call, params.message)
            if not params.configuration.return_immediately:
                async with contextlib.aclosing(follow(call.platform, info, after)) as items:
                    async for item in items:
                        if isinstance(item, CompleteMessage):
                            break
                        if item.type == "question" and await self._waiting(call, info):
                            break
            task = await self._task(call, await call.platform.harness.get_run(info.id))
        return apply_history_length(task, params.configuration)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        validate_proto_required_fields(params)
        validate_history_length(params.configuration)
        with _a2a_errors():
            call = _call(context)
            info, after, new = await self._deliver(call, params.message)
            working = TaskStatus(state=TaskState.TASK_STATE_WORKING)
            first: Event = _status_update(info, working)
            if new:
                # the new task as submitted: what follows tells how it goes (it may be done)
                task = Task(id=info.id, context_id=info.session, status=working)
                task.history.append(params.message)
                task.history[0].task_id, task.history[0].context_id = info.id, info.session
                first = apply_history_length(task, params.configuration)
        yield first
        async for event in self._events(call, info, after):
            yield event

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        validate_proto_required_fields(params)
        with _a2a_errors():
            call = _call(context)
            info = await self._run(call, params.id)
            nodes = await call.platform.session_nodes(info.session, info.branch)
            task = task_of(info, nodes)
            if task.status.state in _TERMINAL:
                raise UnsupportedOperationError(
                    message=f"task {info.id} is in terminal state: "
                    f"{TaskState.Name(task.status.state)}"
                )
            after = _last_event(info, nodes)
        yield task
        async for event in self._events(call, info, after):
            yield event

    # -- what roost does not offer

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise UnsupportedOperationError(message="the agent has no extended card")

    # -- helpers

    async def _run(self, call: Call, task_id: str) -> RunInfo:
        """The run of task ``task_id``, if it is one of the endpoint's agent."""
        if not _RUN_ID.match(task_id):
            raise TaskNotFoundError(message=f"no task {task_id!r}")
        try:
            info = await call.platform.harness.get_run(task_id)
        except NotFoundError:
            raise TaskNotFoundError(message=f"no task {task_id!r}") from None
        if info.agent != call.agent:
            raise TaskNotFoundError(message=f"no task {task_id!r} of agent {call.agent}")
        return info

    async def _task(self, call: Call, info: RunInfo) -> Task:
        return task_of(info, await call.platform.session_nodes(info.session, info.branch))

    async def _waiting(self, call: Call, info: RunInfo) -> bool:
        """Whether the run waits for an answer now (a replayed question may be answered)."""
        current = await call.platform.harness.get_run(info.id)
        return current.status == "running" and bool(current.question)

    async def _deliver(self, call: Call, message: Message) -> tuple[RunInfo, str | None, bool]:
        """Start a run on ``message``, or answer the question its task waits on. Returns
        the run, the event to follow it after (``None``: from its start) and whether the
        message started it."""
        if message.role == Role.ROLE_AGENT:
            raise InvalidParamsError(message="a message to an agent has the role ROLE_USER")
        platform = call.platform
        if not message.task_id:
            run_input = input_of(message)
            if message.context_id:
                await self._context(call, message.context_id)
            started = await platform.start(
                call.agent, run_input, session=message.context_id or None
            )
            return await platform.harness.get_run(started.run_id), None, True
        info = await self._run(call, message.task_id)
        if message.context_id and message.context_id != info.session:
            raise InvalidParamsError(
                message=f"contextId {message.context_id} is not the context of task {info.id}"
            )
        nodes = await platform.session_nodes(info.session, info.branch)
        task = task_of(info, nodes)
        if task.status.state in _TERMINAL:
            raise UnsupportedOperationError(
                message=f"task {info.id} is in terminal state: "
                f"{TaskState.Name(task.status.state)}; send a new message in its context "
                "to go on"
            )
        if task.status.state != TaskState.TASK_STATE_INPUT_REQUIRED:
            raise UnsupportedOperationError(
                message=f"task {info.id} is working and waits for no input"
            )
        answered = _pending_question(info, nodes) or _last_event(info, nodes)
        await platform.harness.answer(info.id, _answer_of(message))
        return info, answered, False

    async def _context(self, call: Call, context_id: str) -> None:
        if len(context_id) > 200:
            raise InvalidParamsError(message="contextId: at most 200 characters")
        try:
            await call.platform.get_session(context_id)
        except NotFoundError:
            raise InvalidParamsError(
                message=f"no context {context_id!r}: leave contextId out to start one"
            ) from None

    async def _events(self, call: Call, info: RunInfo, after: str | None) -> AsyncIterator[Event]:
        """Task ``info``'s updates after event ``after``, until it ends or needs input."""
        streamed = False
        with _a2a_errors():
            async with contextlib.aclosing(follow(call.platform, info, after)) as items:
                async for item in items:
                    if isinstance(item, CompleteMessage):
                        outcome = Outcome.of_complete(item)
                        if outcome.ok:
                            yield _artifact_update(info, outcome.artifact(), last=True)
                        yield _status_update(info, outcome.status(info))
                        return
                    if item.type == "token":
                        text = str(item.data.get("text", ""))
                        chunk = Artifact(
                            artifact_id=OUTPUT_ARTIFACT, name="output", parts=[new_text_part(text)]
                        )
                        yield _artifact_update(info, chunk, append=streamed)
                        streamed = True
                    elif item.type == "question" and await self._waiting(call, info):
                        status = TaskStatus(state=TaskState.TASK_STATE_INPUT_REQUIRED)
                        status.message.CopyFrom(_text(item.id, item.text, info))
                        yield _status_update(info, status)
                        return
                    elif item.type in _WORKING_EVENTS:
                        status = TaskStatus(state=TaskState.TASK_STATE_WORKING)
                        status.message.CopyFrom(_text(item.id, item.text, info))
                        update = _status_update(info, status)
                        update.metadata.update({"type": item.type, "data": item.data})
                        yield update


def _artifact_update(
    info: RunInfo, artifact: Artifact, *, append: bool = False, last: bool = False
) -> TaskArtifactUpdateEvent:
    return TaskArtifactUpdateEvent(
        task_id=info.id, context_id=info.session, artifact=artifact, append=append, last_chunk=last
    )


def _status_update(info: RunInfo, status: TaskStatus) -> TaskStatusUpdateEvent:
    return TaskStatusUpdateEvent(task_id=info.id, context_id=info.session, status=status)


def _pending_question(info: RunInfo, nodes: list[Node]) -> str | None:
    """The id of the question event the run's answer is still missing for, if recorded."""
    pending: str | None = None
    for node in nodes:
        content = node.content
        if node.kind == "event" and content.get("correlation_id") == info.id:
            if content.get("type") == "question":
                pending = str(content.get("id", ""))
            elif content.get("type") == "answer":
                pending = None
    return pending


def _last_event(info: RunInfo, nodes: list[Node]) -> str | None:
    ids = [
        str(n.content.get("id", ""))
        for n in nodes
        if n.kind == "event" and n.content.get("correlation_id") == info.id
    ]
    return ids[-1] if ids else None


def _token_of(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _offset_of(token: str) -> int:
    if not token:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(token.encode() + b"==").decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidParamsError(
            message=f"pageToken {token!r} is not one this server gave"
        ) from None
    if offset < 0:
        raise InvalidParamsError(message=f"pageToken {token!r} is not one this server gave")
    return offset


__all__ = [
    "OUTPUT_ARTIFACT",
    "PREFIX",
    "Call",
    "RoostCallContextBuilder",
    "RoostRequestHandler",
    "agent_card",
    "follow",
    "input_of",
    "task_of",
]
