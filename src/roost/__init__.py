"""Roost: a Python runtime for AI agents.

Agent code programs against :class:`roost.AgentContext`; everything else is the platform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from roost.runtime import AgentContext


def __getattr__(name: str) -> Any:
    # Lazy, so that `import roost.protocol` (e.g. in a service worker) stays light.
    if name == "AgentContext":
        from roost.runtime import AgentContext

        return AgentContext
    raise AttributeError(f"module 'roost' has no attribute {name!r}")


__all__ = ["AgentContext", "__version__"]
