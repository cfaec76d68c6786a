"""The engines of one process, created on first use and shared by the services."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from roost.engines._base import ChatEngine, EmbeddingEngine
from roost.protocol import (
    CHAT_ENGINES,
    EMBEDDING_ENGINES,
    ENGINE_NAMES,
    REMOTE_ENGINES,
    InvalidRequestError,
)
from roost.stores import ModelRecord

if TYPE_CHECKING:
    from roost.config import Settings

log = logging.getLogger("roost.engines")


#: The library each engine needs (``roost[local]`` brings the embedded ones).
_ENGINE_MODULES = {
    "llama-cpp": "llama_cpp",
    "sentence-transformers": "sentence_transformers",
    "ollama": "ollama",
    "openai": "openai",
}


def installed_engines() -> list[str]:
    """The engines whose libraries this Python environment has (without importing them):
    what an inference or embedding worker here can serve."""
    import importlib.util

    return [name for name in ENGINE_NAMES if importlib.util.find_spec(_ENGINE_MODULES[name])]


class EngineSet:
    """Maps an engine name (plus, for remote engines, a base URL and API key) to one engine
    instance, created lazily: nothing heavy (torch, llama.cpp, the HTTP clients) is imported
    until an engine is first needed.

    Embedded engines are one per process (they hold loaded models); remote engines are one per
    ``(engine, base_url, api_key)`` (they hold an HTTP connection pool). With ``isolate`` (the
    default) the embedded engines run in a child process each
    (:class:`~roost.engines.IsolatedEngine`), so a native crash in llama.cpp or torch fails
    the calls in flight instead of killing this process; ``isolate=False`` runs them here.
    """

    def __init__(
        self,
        *,
        threads: int = 0,
        n_ctx: int = 4096,
        seed: int | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 0,
        isolate: bool = True,
        start_timeout_s: float = 60.0,
    ) -> None:
        """``threads``: CPU threads of the embedded engines (0 = their default). ``n_ctx``
        and ``seed``: llama.cpp defaults. ``timeout_s`` / ``connect_timeout_s``: HTTP timeouts
        of remote engines; ``max_retries``: their client-side retries (0: fail fast and let
        the caller act on the error's ``retryable`` flag). ``isolate``: run llama-cpp and
        sentence-transformers in child processes (see the class docs), each given
        ``start_timeout_s`` to start."""
        self.threads = threads
        self.n_ctx = n_ctx
        self.seed = seed
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retries = max_retries
        self.isolate = isolate
        self.start_timeout_s = start_timeout_s
        self._engines: dict[tuple[str, str, str], Any] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineSet:
        """The engine set a process with ``settings`` uses (``[inference] threads``,
        ``[engines] isolate`` and ``start_timeout_s``)."""
        return cls(
            threads=settings.inference.threads,
            isolate=settings.engines.isolate,
            start_timeout_s=settings.engines.start_timeout_s,
        )

    def get(self, engine: str, base_url: str = "", api_key: str | None = None) -> Any:
        """The engine instance for ``engine`` (created on first use)."""
        if engine not in ENGINE_NAMES:
            raise InvalidRequestError(
                f"unknown engine {engine!r} (known: {', '.join(ENGINE_NAMES)})"
            )
        remote = engine in REMOTE_ENGINES
        key = (engine, base_url.rstrip("/") if remote else "", (api_key or "") if remote else "")
        instance = self._engines.get(key)
        if instance is None:
            instance = self._engines[key] = self._create(engine, base_url, api_key)
        return instance

    def _create(self, engine: str, base_url: str, api_key: str | None) -> Any:
        if engine == "llama-cpp" and self.isolate:
            from roost.engines._isolated import IsolatedEngine

            options = {"n_ctx": self.n_ctx, "n_threads": self.threads or None, "seed": self.seed}
            return IsolatedEngine(engine, options, start_timeout_s=self.start_timeout_s)
        if engine == "sentence-transformers" and self.isolate:
            from roost.engines._isolated import IsolatedEngine

            return IsolatedEngine(
                engine, {"threads": self.threads}, start_timeout_s=self.start_timeout_s
            )
        if engine == "llama-cpp":
            from roost.engines._llama import LlamaCppEngine

            return LlamaCppEngine(n_ctx=self.n_ctx, n_threads=self.threads or None, seed=self.seed)
        if engine == "sentence-transformers":
            from roost.engines._st import SentenceTransformerEngine

            return SentenceTransformerEngine(threads=self.threads)
        if engine == "ollama":
            from roost.engines._ollama import OllamaEngine

            return OllamaEngine(
                base_url,
                api_key=api_key,
                timeout_s=self.timeout_s,
                connect_timeout_s=self.connect_timeout_s,
            )
        from roost.engines._openai import OpenAIEngine

        return OpenAIEngine(
            base_url,
            api_key=api_key,
            timeout_s=self.timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            max_retries=self.max_retries,
        )

    def chat_engine(self, model: ModelRecord, api_key: str | None = None) -> ChatEngine:
        """The engine that serves chat ``model``."""
        if model.engine not in CHAT_ENGINES:
            raise InvalidRequestError(
                f"model {model.name!r} uses engine {model.engine!r}, which cannot chat "
                f"(chat engines: {', '.join(CHAT_ENGINES)})"
            )
        engine: ChatEngine = self.get(model.engine, model.base_url, api_key)
        return engine

    def embedding_engine(self, model: ModelRecord, api_key: str | None = None) -> EmbeddingEngine:
        """The engine that serves embedding ``model``."""
        if model.engine not in EMBEDDING_ENGINES:
            raise InvalidRequestError(
                f"model {model.name!r} uses engine {model.engine!r}, which cannot embed "
                f"(embedding engines: {', '.join(EMBEDDING_ENGINES)})"
            )
        engine: EmbeddingEngine = self.get(model.engine, model.base_url, api_key)
        return engine

    async def list_models(
        self, engine: str, base_url: str = "", api_key: str | None = None
    ) -> list[str]:
        """What ``engine`` (at ``base_url``) can serve: remote engines ask their server."""
        instance = self.get(engine, base_url, api_key)
        models: list[str] = await instance.list_models()
        return models

    async def close(self) -> None:
        """Close every engine created so far (errors are logged, not raised)."""
        engines, self._engines = list(self._engines.values()), {}
        results = await asyncio.gather(*(e.close() for e in engines), return_exceptions=True)
        for engine, result in zip(engines, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("closing engine %s failed: %s", engine.name, result)
