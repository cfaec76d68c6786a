"""The model engines roost knows, named once: model records, settings, the engine set and
the registry all check engine names against these."""

from __future__ import annotations

from typing import Literal, get_args

EngineName = Literal["llama-cpp", "sentence-transformers", "ollama", "openai"]
"""An engine a model runs on."""

ENGINE_NAMES: tuple[EngineName, ...] = get_args(EngineName)
"""Every engine, in the order the CLI lists them."""
EMBEDDED_ENGINES: tuple[EngineName, ...] = ("llama-cpp", "sentence-transformers")
"""Engines that run in a roost process (in a child process of it when isolated)."""
REMOTE_ENGINES: tuple[EngineName, ...] = ("ollama", "openai")
"""Engines reached over HTTP at a model's ``base_url``."""
CHAT_ENGINES: tuple[EngineName, ...] = ("llama-cpp", "ollama", "openai")
"""Engines that serve chat models."""
EMBEDDING_ENGINES: tuple[EngineName, ...] = ("sentence-transformers", "ollama", "openai")
"""Engines that serve embedding models."""
