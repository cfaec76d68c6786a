"""An agent's own dependencies, declared the way its ecosystem does, installed per version.

* **Python**: ``requirements.txt`` and/or ``[project] dependencies`` in ``pyproject.toml``.
  Roost makes a venv with the interpreter it runs under (``python -m venv``) and installs
  them with pip.
* **Node.js**: ``package.json`` with ``dependencies`` plus its lock file
  (``package-lock.json`` or ``npm-shrinkwrap.json``), installed with ``npm ci``: exactly
  the locked versions.

An environment belongs to one bundle: it lives under ``ROOT/<bundle digest>/<kind>``
(``python3.11``, ``node20``), so identical files share it (a second node, a redeploy of the
same files, a restart) and nothing is installed twice. An install holds a lock file next to
its environment (concurrent installs of one digest wait for each other, across processes),
builds in place and writes the ``roost-env.json`` marker last: an environment with the
marker is complete; one without is the leftover of a crash and is rebuilt. A failed
install removes what it made and keeps its log as ``<kind>.failed.log``.

The agent's version folder gets links to its environments: ``.venv`` (the venv) and
``node_modules`` (Node's, since ESM ``import`` resolves packages from the importing file's
folder upwards and never consults ``NODE_PATH``). Bundles never pack either name, so the
links are made on each node that unpacks the version.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import site
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roost.agents._manifest import ManifestError

log = logging.getLogger("roost.agents.deps")

REQUIREMENTS = "requirements.txt"
PYPROJECT = "pyproject.toml"
PACKAGE_JSON = "package.json"
NODE_LOCKS = ("package-lock.json", "npm-shrinkwrap.json")
VENV_LINK = ".venv"
NODE_MODULES = "node_modules"
READY = "roost-env.json"
"""Written last into a finished environment: its presence means the environment is whole."""
INSTALL_LOG = "install.log"

OutputCallback = Callable[[str], None]
"""Receives the install's output, one line at a time, as it happens."""


class DependencyError(ManifestError):
    """An agent's dependencies are declared wrongly or cannot be installed. The message
    names the file, the package (if one is to blame) and the problem."""

    def __init__(self, path: Path | str, problem: str, *, package: str = "") -> None:
        self.package = package
        super().__init__(path, "", problem)


# --- what an agent folder declares ------------------------------------------------------


@dataclass(frozen=True)
class PythonDeps:
    """Python requirements: ``requirements.txt`` (if it lists any) and pyproject's."""

    requirements_txt: bool
    pyproject: tuple[str, ...]

    @property
    def files(self) -> list[str]:
        return [REQUIREMENTS] * self.requirements_txt + [PYPROJECT] * bool(self.pyproject)


@dataclass(frozen=True)
class NodeDeps:
    """npm dependencies, installed from the lock file ``lock``."""

    packages: tuple[str, ...]
    lock: str


@dataclass(frozen=True)
class Dependencies:
    python: PythonDeps | None = None
    node: NodeDeps | None = None

    def __bool__(self) -> bool:
        return self.python is not None or self.node is not None


def find_dependencies(folder: Path | str, *, named_as: Path | str | None = None) -> Dependencies:
    """What ``folder`` declares. Errors name files under ``named_as`` (default: ``folder``)."""
    folder = Path(folder)
    shown = Path(named_as) if named_as is not None else folder
    return Dependencies(_python_deps(folder, shown), _node_deps(folder, shown))


def _python_deps(folder: Path, shown: Path) -> PythonDeps | None:
    listed = False
    requirements = folder / REQUIREMENTS
    if requirements.is_file():
        listed = any(requirement_lines(requirements))
    pyproject: tuple[str, ...] = ()
    if (folder / PYPROJECT).is_file():
        pyproject = _pyproject_dependencies(folder / PYPROJECT, shown / PYPROJECT)
    return PythonDeps(listed, pyproject) if listed or pyproject else None


def requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _pyproject_dependencies(path: Path, shown: Path) -> tuple[str, ...]:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DependencyError(shown, f"not valid TOML: {exc}") from None
    project = data.get("project")
    if not isinstance(project, dict):
        return ()  # tool configuration only (ruff, mypy, ...): nothing to install
    if "dependencies" in (project.get("dynamic") or []):
        raise DependencyError(
            shown,
            "field 'project.dynamic': dynamic dependencies cannot be installed without "
            "building the project; list them in [project] dependencies or requirements.txt",
        )
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise DependencyError(
            shown, "field 'project.dependencies': must be a list of requirement strings"
        )
    return tuple(d.strip() for d in deps if d.strip())


def _node_deps(folder: Path, shown: Path) -> NodeDeps | None:
    manifest = folder / PACKAGE_JSON
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DependencyError(shown / PACKAGE_JSON, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DependencyError(shown / PACKAGE_JSON, "must be a JSON object")
    packages: list[str] = []
    for field in ("dependencies", "optionalDependencies"):
        table = data.get(field) or {}
        if not isinstance(table, dict):
            raise DependencyError(
                shown / PACKAGE_JSON, f"field '{field}': must map package names to versions"
            )
        packages.extend(str(name) for name in table)
    if not packages:
        return None
    lock = next((name for name in NODE_LOCKS if (folder / name).is_file()), None)
    if lock is None:
        others = [n for n in ("yarn.lock", "pnpm-lock.yaml", "bun.lockb") if (folder / n).is_file()]
        found = f" (found {', '.join(others)}; roost installs with `npm ci`)" if others else ""
        raise DependencyError(
            shown / PACKAGE_JSON,
            f"declares dependencies ({', '.join(sorted(set(packages)))}) but there is no "
            f"package-lock.json next to it{found}; run `npm install` in {shown} to create "
            "one (roost installs exactly the locked versions with `npm ci`)",
        )
    return NodeDeps(tuple(sorted(set(packages))), lock)


# --- environments ------------------------------------------------------------------------


def ready(env: Path) -> bool:
    """Whether the environment ``env`` is complete (its marker was written last)."""
    return (env / READY).is_file()


def link_environment(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target`` (atomically; a real folder is left alone)."""
    if link.is_symlink():
        if os.readlink(link) == str(target):
            return
    elif link.exists():
        log.warning("%s is not a link roost made; leaving it (the env is %s)", link, target)
        return
    temporary = link.with_name(f".{link.name}-{secrets.token_hex(4)}")
    os.symlink(target, temporary, target_is_directory=True)
    os.replace(temporary, link)


def environments_linked(folder: Path | str) -> bool:
    """Whether every environment ``folder`` declares is linked into it and complete (a
    restarted node finds its versions ready without looking up their bundles)."""
    folder = Path(folder)
    deps = find_dependencies(folder)
    if deps.python is not None:
        venv = folder / VENV_LINK
        if not venv.is_symlink() or not ready(venv.resolve()):
            return False
    if deps.node is not None:
        modules = folder / NODE_MODULES
        if not modules.is_symlink() or not ready(modules.resolve().parent):
            return False
    return True


def agent_venv(folder: Path | str) -> Path | None:
    """The venv of the agent version in ``folder`` (resolved), if it has one."""
    venv = Path(folder) / VENV_LINK
    if not (venv / "bin" / "python").exists():
        return None
    return venv.resolve()


def agent_path(folder: Path | str, path: str | None) -> str:
    """``path`` (a ``PATH`` value) with the agent's environments' program folders first:
    the venv's ``bin`` and ``node_modules/.bin``."""
    folder = Path(folder)
    venv = agent_venv(folder)
    first = [str(venv / "bin")] if venv is not None else []
    node_bin = folder / NODE_MODULES / ".bin"
    if node_bin.is_dir():
        first.append(str(node_bin.resolve()))
    return os.pathsep.join([*first, *([path] if path else [])])


def use_site_packages(folder: Path | str) -> Path | None:
    """Make the agent venv's packages importable in this process, *after* everything
    already on ``sys.path`` (so roost's own packages win); its ``site-packages`` or None."""
    venv = agent_venv(folder)
    if venv is None:
        return None
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    packages = venv / "lib" / version / "site-packages"
    if not packages.is_dir():
        return None
    if str(packages) not in sys.path:
        site.addsitedir(str(packages))  # appends, and runs its .pth files
    return packages


def read_marker(env: Path) -> dict[str, Any] | None:
    """The ``roost-env.json`` of a finished environment (None if unfinished)."""
    try:
        data: dict[str, Any] = json.loads((env / READY).read_text())
    except (OSError, ValueError):
        return None
    return data


__all__ = [
    "Dependencies",
    "DependencyError",
    "NodeDeps",
    "OutputCallback",
    "PythonDeps",
    "agent_path",
    "agent_venv",
    "environments_linked",
    "find_dependencies",
    "read_marker",
    "use_site_packages",
]
