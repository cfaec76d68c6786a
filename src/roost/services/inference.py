"""The inference service: chat completions from the model a request names.

The request's model name is resolved to a :class:`~roost.stores.ModelRecord` (engine, target,
base URL, API key secret); the matching engine of an :class:`~roost.engines.EngineSet`
answers. With ``stream`` set, each piece of generated text is published as a ``token``
event on the session's event subject while the model runs. Token usage travels back in the
:class:`~roost.protocol.ChatResult` (the runtime records it in the session).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from roost.bus import Bus
from roost.engines import ENGINE_NAMES, EngineSet, TokenCallback
from roost.protocol import (
    ChatRequest,
    ErrorCode,
    EventMessage,
    InvalidRequestError,
    NotFoundError,
    RequestMessage,
    RoostError,
    ServiceTimeoutError,
    ServiceUnavailableError,
    encode,
    from_body,
    subjects,
    tenants,
    to_body,
)
from roost.services._base import ServiceWorker
from roost.stores import ModelKind, ModelRecord

log = logging.getLogger("roost.services.inference")

ModelResolver = Callable[[str], Awaitable[ModelRecord | None]]
"""Model name -> its record; raises :class:`~roost.protocol.NotFoundError` (or returns
``None``) for an unknown name."""

SecretLookup = Callable[[str], Awaitable[str | None]]
"""Secret name -> its value, ``None`` when no such secret is set."""

ModelLister = Callable[[], Awaitable[list[ModelRecord]]]


def engine_shards(served: Sequence[str] | None) -> list[str]:
    """The shard subjects an inference or embedding worker serves: one per engine it runs
    (``served``; ``None``: every engine, as the one process of local mode does). Callers
    route a model's requests to its engine's shard (see :class:`roost.runtime.EngineRouter`)."""
    return list(served) if served else list(ENGINE_NAMES)


def require_served(model: ModelRecord, served: Sequence[str] | None) -> None:
    """A worker restricted to some engines refuses another's model (retryable: a request
    that reached it on the service's plain subject can go to a worker that runs it)."""
    if served and model.engine not in served:
        raise ServiceUnavailableError(
            f"this worker serves engine(s) {', '.join(served)}, not {model.engine} "
            f"(model {model.name!r})",
            model=model.name,
        )


async def resolve(
    name: str,
    kind: ModelKind,
    resolve_model: ModelResolver,
    list_models: ModelLister | None,
    *,
    tenant: str = tenants.DEFAULT_TENANT,
) -> ModelRecord:
    """The record of model ``name`` as a run of ``tenant`` means it (its own model of that
    name, else the deployment's shared one: :func:`~roost.protocol.tenants.visible_names`),
    which must be a ``kind`` model.

    Unknown names raise :class:`~roost.protocol.NotFoundError` listing the known models of
    that kind (when ``list_models`` is given); a model of the other kind raises
    :class:`~roost.protocol.InvalidRequestError`.
    """
    model = None
    for candidate in tenants.visible_names(tenant, name):
        try:
            model = await resolve_model(candidate)
        except (NotFoundError, LookupError):  # the next candidate may exist
            model = None
        if model is not None:
            break
    if model is None:
        message = (
            await _unknown(name, kind, list_models, tenant)
            if list_models is not None
            else f"unknown {kind} model {name!r}"
        )
        raise NotFoundError(message, model=name)
    if model.kind != kind:
        service = "infer" if kind == "chat" else "embed"
        raise InvalidRequestError(
            f"model {name!r} is a {model.kind} model; the {service} service needs a {kind} model",
            model=name,
        )
    return model


async def visible_models(
    list_models: ModelLister, tenant: str, kind: ModelKind | None = None
) -> list[ModelRecord]:
    """The models a run of ``tenant`` can use (of ``kind``), by the names it uses: its own,
    then the shared ones it has none of the same name of."""
    # by the name a run uses, in the registry's order; an own model hides a shared one
    visible: dict[str, ModelRecord] = {}
    for model in await list_models():
        if kind is not None and model.kind != kind:
            continue
        local = tenants.local_name(tenant, model.name)
        if local is not None:
            visible[local] = model
        elif tenants.SEPARATOR not in model.name:
            visible.setdefault(model.name, model)
    return list(visible.values())


async def _unknown(name: str, kind: ModelKind, list_models: ModelLister, tenant: str) -> str:
    try:
        known = sorted(
            tenants.local_name(tenant, m.name) or m.name
            for m in await visible_models(list_models, tenant, kind)
        )
    except Exception:  # the listing is a courtesy; the error is "not found" either way
        known = []
    return f"unknown {kind} model {name!r} (known {kind} models: {', '.join(known) or 'none'})"


async def api_key_for(model: ModelRecord, lookup: SecretLookup) -> str | None:
    """The API key of ``model`` from its named secret (``None`` when it names none)."""
    if not model.api_key_secret:
        return None
    key = await lookup(model.api_key_secret)
    if key is None:
        raise RoostError(
            f"model {model.name!r} needs the API key in secret {model.api_key_secret!r}, "
            f"which is not set (roost secret set {model.api_key_secret})",
            code=ErrorCode.AUTH,
            model=model.name,
            secret=model.api_key_secret,
        )
    return key


class InferenceService(ServiceWorker):
    """Service ``infer``: ``chat`` answers a :class:`~roost.protocol.ChatRequest` with a
    :class:`~roost.protocol.ChatResult`; ``models`` lists the chat models it can resolve
    (when constructed with ``list_models``).

    An empty ``ChatRequest.model`` means ``default_model``. The engine call is bounded by the
    request's ``timeout_s`` (after which the caller has given up anyway).
    """

    service = "infer"

    def __init__(
        self,
        bus: Bus,
        engines: EngineSet,
        resolve_model: ModelResolver,
        api_key_lookup: SecretLookup,
        *,
        default_model: str = "smollm2",
        list_models: ModelLister | None = None,
        served_engines: Sequence[str] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(bus, shards=engine_shards(served_engines), **kw)
        self.served_engines = served_engines
        self.engines = engines
        self.resolve_model = resolve_model
        self.api_key_lookup = api_key_lookup
        self.default_model = default_model
        self.list_models = list_models

    async def op_chat(self, request: RequestMessage) -> dict[str, Any]:
        chat = from_body(request.body, ChatRequest)
        name = chat.model or self.default_model
        if not name:
            raise InvalidRequestError("the chat request names no model and there is no default")
        if not chat.messages:
            raise InvalidRequestError("a chat request needs at least one message")
        tenant = tenants.tenant_of(request.agent)
        model = await resolve(name, "chat", self.resolve_model, self.list_models, tenant=tenant)
        require_served(model, self.served_engines)
        engine = self.engines.chat_engine(model, await api_key_for(model, self.api_key_lookup))
        on_token = self._token_publisher(request) if chat.stream else None
        try:
            result = await asyncio.wait_for(
                engine.chat(model, chat, on_token=on_token), request.timeout_s
            )
        except TimeoutError:
            raise ServiceTimeoutError(
                f"model {name!r} ({model.engine}) gave no answer within {request.timeout_s:g}s",
                model=name,
            ) from None
        return to_body(result)

    async def op_models(self, request: RequestMessage) -> dict[str, Any]:
        """The chat models known to the registry (names, engines)."""
        tenant = tenants.tenant_of(request.agent)
        models = (
            await visible_models(self.list_models, tenant, "chat")
            if self.list_models is not None
            else []
        )
        return {
            "models": [
                {
                    "name": tenants.local_name(tenant, m.name) or m.name,
                    "engine": m.engine,
                    "target": m.target,
                }
                for m in models
            ]
        }

    def _token_publisher(self, request: RequestMessage) -> TokenCallback | None:
        if not request.session:
            log.debug("stream requested without a session: no token events for %s", request.id)
            return None
        subject = subjects.events(request.session)
        bus = self.bus
        failed = False

        async def publish(text: str) -> None:
            nonlocal failed
            event = EventMessage(
                type="token",
                session=request.session,
                branch=request.branch,
                agent=request.agent,
                correlation_id=request.id,
                trace=request.trace,
                data={"text": text},
            )
            try:
                await bus.publish(subject, encode(event))
            except Exception as exc:  # events are best effort: never fail the answer for them
                if not failed:
                    log.warning("could not publish token events on %s: %s", subject, exc)
                    failed = True

        return publish
