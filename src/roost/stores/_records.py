"""Plain records that stores return and services consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ModelKind = Literal["chat", "embedding"]
EngineName = Literal["llama-cpp", "sentence-transformers", "ollama", "openai"]


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A model known to the registry.

    ``target`` is what the engine calls the model: a GGUF path or package model for
    ``llama-cpp``, a model directory for ``sentence-transformers``, the model name for
    ``ollama`` / ``openai``. ``api_key_secret`` names a secret in the secret store.
    """

    name: str
    kind: ModelKind
    engine: EngineName
    target: str
    base_url: str = ""
    api_key_secret: str = ""
    dimension: int = 0  # embedding models: vector size (0 = ask the engine)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """A deployed agent: its validated manifest (as a dict) and where its files live."""

    name: str
    version: int
    manifest: dict[str, Any]
    path: str
    deployed_at: float
