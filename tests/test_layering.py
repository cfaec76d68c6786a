"""Dependencies point inward: each package of roost imports only packages of lower layers
(or its own), read from the source itself, so a new upward import fails here.

From the ground up (ARCHITECTURE.md, "Dependencies still point inward"):
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "roost"

#: Layer of each package (a top-level module counts as a package). Higher may import lower.
LAYERS: dict[str, int] = {
    # the ground: typed messages and errors, and OS plumbing (stdlib only)
    "protocol": 0, "_proc": 0, "_lazy": 0,
    # configuration and manifests (their errors are roost errors), and the wire formats
    # roost's HTTP servers speak (OpenAI shapes, HTTP statuses of error codes)
    "config": 1, "agents": 1, "wire": 1, "_statefile": 1,
    # tool functions, transports and storage, and the supervisor's process machinery
    "tools": 2, "bus": 2, "stores": 2, "supervisor": 2,
    # the tools daemon on users' machines: a separate program that shares only the protocol
    "toolsd": 2,
    # what serves and runs models and calls; what credentials mean (on the principal store)
    "engines": 3, "rpc": 3, "auth": 3,
    "services": 4,
    # the gateway users' tools daemons connect to (it reaches the bus and the credentials)
    "gateway": 4,
    "runtime": 5,
    "workflows": 6, "testing": 6,
    # the platform, and beside it (neither imports the other: production code does not
    # depend on dev tooling) the real servers from wheels for tests and dev, which launch
    # Temporal as workflows' embedded server of local mode does
    "platform": 7, "devservers": 7,
    "doctor": 8, "server": 8,
    # the programs at the top (the dev cluster starts roostd; the CLI drives all)
    "daemon": 9, "devcluster": 10, "cli": 11,
}  # fmt: skip
ROOT_MODULES = {"__init__", "__main__"}  # the package's own lazy exports and `python -m roost`


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    """The roost packages ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "roost" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_package_has_a_layer() -> None:
    packages = {_package(p) for p in SRC.rglob("*.py")} - ROOT_MODULES
    assert packages <= set(LAYERS), f"give these a layer: {sorted(packages - set(LAYERS))}"


def test_every_import_points_inward() -> None:
    upward: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        package = _package(path)
        if package in ROOT_MODULES or "_gen" in path.parts:
            continue
        for target in _imports(path) - {package}:
            if LAYERS.get(target, -1) >= LAYERS[package]:
                upward.append(f"{path.relative_to(SRC)} imports roost.{target} "
                              f"(layer {LAYERS.get(target)} >= {LAYERS[package]})")  # fmt: skip
    assert not upward, "\n".join(upward)


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, known: set[str]) -> set[str]:
    """The roost modules ``path`` imports anywhere: at module level, inside functions and
    under ``if TYPE_CHECKING:`` alike (each is a dependency of one module on another)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                for a in node.names
            )
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known}


def test_no_import_cycles_between_the_modules_of_a_package() -> None:
    """Across packages the layers forbid cycles; within one, two modules that need each
    other hold one idea between them (move it to a module of its own). A package's
    ``__init__`` re-exporting its modules is how packages export, so it is left out."""
    paths = {
        _module_name(p): p
        for p in SRC.rglob("*.py")
        if "_gen" not in p.parts and p.name != "__init__.py"
    }
    graph = {
        name: {t for t in _module_imports(path, set(paths)) if t.rsplit(".", 1)[0] ==
               name.rsplit(".", 1)[0]} - {name}
        for name, path in paths.items()
    }  # fmt: skip
    cycles: set[tuple[str, ...]] = set()

    def visit(name: str, stack: list[str]) -> None:
        for target in graph[name]:
            if target in stack:
                cycle = stack[stack.index(target) :]
                start = cycle.index(min(cycle))
                cycles.add(tuple(cycle[start:] + cycle[:start]))
            else:
                visit(target, [*stack, target])

    for name in graph:
        visit(name, [name])
    assert not cycles, "\n".join(" -> ".join(c) for c in sorted(cycles))


def test_the_tools_daemon_shares_only_the_protocol() -> None:
    # it runs on users' machines: it must stay light and know nothing of the platform
    found = set()
    for path in (SRC / "toolsd").rglob("*.py"):
        found |= _imports(path)
    assert found <= {"protocol", "toolsd"}, sorted(found - {"protocol", "toolsd"})
