"""The model catalog: registrations checked and cached, and what engines can serve."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from roost.engines import EngineSet
from roost.protocol import (
    ENGINE_NAMES,
    REMOTE_ENGINES,
    InvalidRequestError,
    NotFoundError,
    RoostError,
)
from roost.stores import AvailableModel, ModelRecord, RegistryStore

MODEL_CACHE_S = 5.0
"""How long a process trusts a model record it fetched from the registry."""


def model_record(
    *,
    name: str,
    engine: str,
    target: str,
    kind: str = "chat",
    base_url: str = "",
    api_key_secret: str = "",
    dimension: int = 0,
) -> ModelRecord:
    """A model registration, checked (``roost model add``, locally or remotely)."""
    if engine not in ENGINE_NAMES:
        raise InvalidRequestError(f"unknown engine {engine!r} (one of: {', '.join(ENGINE_NAMES)})")
    if kind not in ("chat", "embedding"):
        raise InvalidRequestError(f"model kind must be 'chat' or 'embedding', not {kind!r}")
    if engine in REMOTE_ENGINES and not base_url:
        raise InvalidRequestError(f"the {engine} engine needs --base-url")
    return ModelRecord(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        engine=engine,  # type: ignore[arg-type]
        target=target,
        base_url=base_url,
        api_key_secret=api_key_secret,
        dimension=dimension,
    )


async def register_defaults(registry: RegistryStore, models: list[ModelRecord]) -> None:
    """Register the embedded default models, refreshing their paths (they move with the venv)."""
    for model in models:
        current = await registry.get_model(model.name)
        if current is None or (current.engine == model.engine and current.target != model.target):
            await registry.add_model(model, replace=True)


class ModelCatalog:
    """The registry's models as one process sees them.

    Every model call looks its model up (the router for its engine, the service for the
    rest), so records are kept :data:`MODEL_CACHE_S`: a model changed by another process
    reaches this one within that; a change made through this catalog at once.
    """

    def __init__(
        self,
        registry: RegistryStore,
        engines: EngineSet,
        secret: Callable[[str], Awaitable[str | None]],
        embedded: Callable[[], list[ModelRecord]],
    ) -> None:
        self.registry = registry
        self.engines = engines
        self._secret = secret
        self._embedded = embedded
        self._cache: dict[str, tuple[ModelRecord, float]] = {}

    async def get(self, name: str) -> ModelRecord:
        """The registered model ``name``; :class:`~roost.protocol.NotFoundError` if none."""
        cached = self._cache.get(name)
        if cached is not None and time.monotonic() - cached[1] < MODEL_CACHE_S:
            return cached[0]
        model = await self.registry.get_model(name)
        if model is None:
            raise NotFoundError(f"unknown model {name!r}; see `roost model list`")
        self._cache[name] = (model, time.monotonic())
        return model

    async def registered(self) -> list[ModelRecord]:
        """Every registered model."""
        return await self.registry.list_models()

    async def add(self, record: ModelRecord, *, replace: bool = False) -> ModelRecord:
        await self.registry.add_model(record, replace=replace)
        self._cache.pop(record.name, None)
        return record

    async def remove(self, name: str) -> None:
        await self.get(name)  # an unknown model is a NotFoundError naming it
        await self.registry.remove_model(name)
        self._cache.pop(name, None)

    async def available(
        self, engine: str | None = None, base_url: str = ""
    ) -> list[AvailableModel]:
        """Models each engine can serve: embedded ones installed here, and what remote
        engines (registered base URLs, or ``base_url``) list."""
        found: list[AvailableModel] = []
        for model in self._embedded():
            if engine in (None, model.engine):
                found.append(AvailableModel(model.engine, model.name, "embedded"))
        remotes: set[tuple[str, str, str]] = set()
        for model in await self.registered():
            if model.engine in REMOTE_ENGINES and engine in (None, model.engine):
                remotes.add((model.engine, model.base_url, model.api_key_secret))
        if base_url:
            for name in (engine,) if engine else REMOTE_ENGINES:
                if name in REMOTE_ENGINES:
                    remotes.add((name, base_url, ""))
        for name, url, secret in sorted(remotes):
            api_key = await self._secret(secret) if secret else None
            try:
                listed = await self.engines.list_models(name, url, api_key)
            except RoostError as exc:
                found.append(AvailableModel(name, f"(unreachable: {exc.message})", url))
                continue
            found.extend(AvailableModel(name, m, url) for m in listed)
        return found


__all__ = ["MODEL_CACHE_S", "ModelCatalog", "model_record", "register_defaults"]
