"""Lazy package exports (PEP 562), so importing a package loads only what is used.

A package lists where each public name lives and installs the pair this returns::

    __getattr__, __dir__ = lazy_exports(__name__, {"AgentContext": "roost.runtime._context"})

and keeps its ``__all__`` and, under ``if TYPE_CHECKING:``, the real imports for type
checkers. The first access imports the module and caches the name in the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, modules: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose names live in ``modules``
    (``name -> module``; a module name starting with ``.`` is relative to ``package``)."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = package + module if module.startswith(".") else module
        value = getattr(importlib.import_module(target), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *modules})

    return __getattr__, __dir__
