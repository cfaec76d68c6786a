"""Where each of an agent's tools runs, and the name a model knows it by."""

from __future__ import annotations

from dataclasses import dataclass

from roost.agents import RunsOn
from roost.tools._tool import Tool


def offered_name(name: str) -> str:
    """The name a model is offered for tool ``name``: model APIs allow only letters, digits,
    ``_`` and ``-``, so an MCP tool ``notes.search`` is offered as ``notes__search``."""
    return name.replace(".", "__")


@dataclass(frozen=True)
class DeclaredTool:
    """One tool of an agent's manifest, resolved.

    ``server`` is its implementation in the worker (a built-in or a function in the agent's
    folder): set for ``server`` and ``anywhere`` tools, ``None`` for ``daemon`` tools, whose
    implementation is the run owner's tools daemon.
    """

    name: str
    runs_on: RunsOn
    description: str = ""
    server: Tool | None = None

    @property
    def offered_name(self) -> str:
        return offered_name(self.name)
