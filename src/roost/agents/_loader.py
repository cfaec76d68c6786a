"""Loading Python code (agent entry points, tools) from an agent's folder."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roost.agents._deps import use_site_packages

_ROOT = "roost_agents"


class EntryPointError(Exception):
    """An agent's ``module:function`` cannot be loaded."""


def _package_for(folder: Path, key: str) -> str:
    """A synthetic package whose path is the agent folder, so modules in it import each
    other relatively and two agents' ``agent.py`` never collide in ``sys.modules``."""
    if _ROOT not in sys.modules:
        root = types.ModuleType(_ROOT)
        root.__path__ = []
        sys.modules[_ROOT] = root
    name = f"{_ROOT}.{re.sub(r'[^0-9a-zA-Z_]', '_', key)}"
    package = sys.modules.get(name)
    if package is None or list(getattr(package, "__path__", [])) != [str(folder)]:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    return name


def load_entry(folder: Path | str, entry: str, *, key: str = "") -> Callable[..., Any]:
    """Import ``module:function`` from ``folder`` and return the callable.

    ``key`` names the synthetic package (agent name and version), so a redeployed agent
    loads fresh code. If the version has a venv of its own dependencies (``.venv``), its
    packages become importable, after roost's own: one process, one ``sys.path``, so an
    agent's package that roost also has is roost's version (use the process runtime for
    an environment of the agent's own).
    """
    folder = Path(folder).resolve()
    use_site_packages(folder)
    module_name, _, attr = entry.partition(":")
    if not module_name or not attr:
        raise EntryPointError(f"entry {entry!r} must look like 'module:function'")
    package = _package_for(folder, key or folder.name)
    module_file = folder / (module_name.replace(".", "/") + ".py")
    if not module_file.is_file() and not (folder / module_name.replace(".", "/")).is_dir():
        raise EntryPointError(f"entry {entry!r}: no module {module_name!r} in {folder}")
    try:
        module = importlib.import_module(f"{package}.{module_name}")
    except Exception as exc:
        raise EntryPointError(
            f"entry {entry!r}: importing {module_file.name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise EntryPointError(f"entry {entry!r}: {module_name} has no callable {attr!r}")
    return fn  # type: ignore[no-any-return]
