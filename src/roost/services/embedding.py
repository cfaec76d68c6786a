"""The embedding service: vectors for texts from the embedding model a request names."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec

from roost.bus import Bus
from roost.engines import EngineSet
from roost.protocol import (
    EmbedRequest,
    InvalidRequestError,
    RequestMessage,
    ServiceTimeoutError,
    UpstreamError,
    from_body,
    tenants,
    to_body,
)
from roost.services._base import ServiceWorker
from roost.services.inference import (
    ModelLister,
    ModelResolver,
    SecretLookup,
    api_key_for,
    engine_shards,
    require_served,
    resolve,
)


class EmbeddingService(ServiceWorker):
    """Service ``embed``: ``embed`` turns an :class:`~roost.protocol.EmbedRequest` into an
    :class:`~roost.protocol.EmbedResult` (one vector per input, in order, ``dimension`` and
    token usage filled in).

    An empty ``EmbedRequest.model`` means ``default_model``. A chat model is refused; a model
    registered with a ``dimension`` that its engine does not produce is an error (vector
    collections depend on it).
    """

    service = "embed"

    def __init__(
        self,
        bus: Bus,
        engines: EngineSet,
        resolve_model: ModelResolver,
        api_key_lookup: SecretLookup,
        *,
        default_model: str = "minilm",
        list_models: ModelLister | None = None,
        max_inputs: int = 2048,
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
        self.max_inputs = max_inputs

    async def op_embed(self, request: RequestMessage) -> dict[str, Any]:
        embed = from_body(request.body, EmbedRequest)
        name = embed.model or self.default_model
        if not name:
            raise InvalidRequestError("the embed request names no model and there is no default")
        if len(embed.inputs) > self.max_inputs:
            raise InvalidRequestError(
                f"{len(embed.inputs)} inputs in one embed request; at most {self.max_inputs}"
            )
        model = await resolve(
            name,
            "embedding",
            self.resolve_model,
            self.list_models,
            tenant=tenants.tenant_of(request.agent),
        )
        require_served(model, self.served_engines)
        engine = self.engines.embedding_engine(model, await api_key_for(model, self.api_key_lookup))
        try:
            result = await asyncio.wait_for(
                engine.embed(model, list(embed.inputs)), request.timeout_s
            )
        except TimeoutError:
            raise ServiceTimeoutError(
                f"model {name!r} ({model.engine}) gave no vectors within {request.timeout_s:g}s",
                model=name,
            ) from None
        if len(result.vectors) != len(embed.inputs):
            raise UpstreamError(
                f"model {name!r} returned {len(result.vectors)} vectors for "
                f"{len(embed.inputs)} inputs",
                model=name,
            )
        dimension = len(result.vectors[0]) if result.vectors else result.dimension
        if model.dimension and dimension and dimension != model.dimension:
            raise InvalidRequestError(
                f"model {name!r} is registered with dimension {model.dimension} but "
                f"{model.engine} produced {dimension}-dimensional vectors; fix the model's "
                "dimension (or its 'dimensions' option)",
                model=name,
            )
        result = msgspec.structs.replace(
            result, model=model.name, dimension=dimension or model.dimension
        )
        return to_body(result)

    async def op_models(self, request: RequestMessage) -> dict[str, Any]:
        """The embedding models known to the registry (names, engines, dimensions)."""
        models = await self.list_models() if self.list_models is not None else []
        return {
            "models": [
                {"name": m.name, "engine": m.engine, "target": m.target, "dimension": m.dimension}
                for m in models
                if m.kind == "embedding"
            ]
        }
