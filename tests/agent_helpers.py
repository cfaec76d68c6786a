"""Agent folders for tests: write the files of an agent, or a Python agent from its code."""

from __future__ import annotations

import textwrap
from pathlib import Path

#: A Python agent that counts its runs in session KV (1, 2, ... on one branch).
COUNTER = """
async def run(ctx, input):
    count = int(await ctx.kv.get_text("count", "0")) + 1
    await ctx.kv.put("count", str(count))
    return count
"""


def write_agent(folder: Path, files: dict[str, str]) -> Path:
    """``folder`` with ``files`` (name -> text, dedented) in it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def make_agent(
    root: Path,
    name: str,
    code: str,
    extra: str = "",
    services: tuple[str, ...] = ("kv",),
    *,
    tools: str = "",
) -> Path:
    """A ``runtime = "python"`` agent ``root/name`` whose ``agent.py`` is ``code``;
    ``extra`` is appended to its ``agent.toml`` (``services=()`` leaves the services line
    to ``extra``), and ``tools`` is its ``tools.py`` if given."""
    toml = f'name = "{name}"\nruntime = "python"\nentry = "agent:run"\n'
    if services:
        listed = ", ".join(f'"{service}"' for service in services)
        toml += f"services = [{listed}]\n"
    files = {"agent.toml": toml + extra, "agent.py": code}
    if tools:
        files["tools.py"] = tools
    return write_agent(root / name, files)


def tools_toml(*names: str, runs_on: str = "daemon") -> str:
    """``[[tools]]`` tables declaring ``names``, each placed ``runs_on``."""
    return "".join(f'\n[[tools]]\nname = "{name}"\nruns_on = "{runs_on}"\n' for name in names)
