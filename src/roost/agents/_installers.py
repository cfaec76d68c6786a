"""The installers of agent environments: a venv + pip for Python, ``npm ci`` for Node.js.

Each runs its commands through a :class:`Runner` that streams their output line by line,
keeps it in the environment's install log, and enforces one deadline for the whole install
(a timeout kills the command's process group). A failed command becomes a
:class:`~roost.agents._deps.DependencyError` naming the declaring file and, when pip or npm
names one, the package to blame.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import re
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from roost._proc import signal_group
from roost.agents._deps import (
    NODE_MODULES,
    PACKAGE_JSON,
    PYPROJECT,
    REQUIREMENTS,
    DependencyError,
    NodeDeps,
    OutputCallback,
    PythonDeps,
    requirement_lines,
)

_KEEP_LINES = 400  # of an install's output, for the error message


@dataclass(frozen=True)
class InstallOptions:
    """How environments are installed (``[agents]`` settings)."""

    root: Path
    """Where environments live (``$ROOST_HOME/envs``)."""
    timeout_s: float = 600.0
    pip_args: tuple[str, ...] = ()
    npm_args: tuple[str, ...] = ()


class Build:
    kind: str
    label: str
    file: Path
    """The file errors name when no more specific one is to blame."""

    async def __call__(self, env: Path, run: Runner) -> None:
        raise NotImplementedError


class Runner:
    """Runs one install command: output streamed, logged and kept; a shared deadline."""

    def __init__(
        self, log_file: IO[str], say: OutputCallback, deadline: float, timeout_s: float, b: Build
    ) -> None:
        self.log_file = log_file
        self.say = say
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.build = b
        self.lines: deque[str] = deque(maxlen=_KEEP_LINES)

    async def __call__(self, argv: Sequence[str], cwd: Path, env: dict[str, str]) -> int:
        command = f"$ {' '.join(argv)}"
        self.log_file.write(command + "\n")
        self.say(command)
        self.lines.clear()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout stops all of it
                limit=1 << 20,
            )
        except OSError as exc:
            raise DependencyError(self.build.file, f"cannot run {argv[0]!r}: {exc}") from None
        assert proc.stdout is not None
        try:
            async with asyncio.timeout_at(_loop_deadline(self.deadline)):
                while raw := await proc.stdout.readline():
                    line = raw.decode(errors="replace").rstrip()
                    self.lines.append(line)
                    self.log_file.write(line + "\n")
                    self.log_file.flush()
                    if line.strip():
                        self.say(line)
                return await proc.wait()
        except TimeoutError:
            raise DependencyError(
                self.build.file,
                f"installing its {self.build.kind} dependencies took longer than "
                f"agents.install_timeout_s = {self.timeout_s:g}s (last output: "
                f"{self.lines[-1] if self.lines else 'none'!r})",
            ) from None
        finally:
            if proc.returncode is None:
                signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()


def _loop_deadline(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


def _tool_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


# --- Python ---------------------------------------------------------------------------------


def python_tag() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def _pip_runs_other_pythons() -> bool:
    """Whether roost's own pip can install into another interpreter (``pip --python``,
    pip >= 22.3), so agent venvs need no pip of their own."""
    if importlib.util.find_spec("pip") is None:
        return False
    try:
        major, minor = (int(p) for p in importlib.metadata.version("pip").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (22, 3)


class PythonBuild(Build):
    kind = "python"

    def __init__(self, folder: Path, shown: Path, deps: PythonDeps, options: InstallOptions):
        self.folder, self.shown, self.deps, self.options = folder, shown, deps, options
        self.file = shown / deps.files[0]
        self.label = f"Python dependencies ({', '.join(deps.files)})"

    async def __call__(self, env: Path, run: Runner) -> None:
        shared_pip = _pip_runs_other_pythons()
        venv = [sys.executable, "-m", "venv", *(["--without-pip"] * shared_pip), str(env)]
        if await run(venv, self.folder, _tool_env()) != 0:
            raise DependencyError(
                self.file, f"`python -m venv` failed: {run.lines[-1] if run.lines else ''}"
            )
        python = str(env / "bin" / "python")
        pip = (
            [sys.executable, "-m", "pip", "--python", python]
            if shared_pip
            else [python, "-m", "pip"]
        )
        argv = [*pip, "install", "--no-input", "--disable-pip-version-check", "--progress-bar=off"]
        if self.deps.requirements_txt:
            argv += ["-r", str(self.folder / REQUIREMENTS)]
        argv += [*self.deps.pyproject, *self.options.pip_args]
        # relative paths in requirements (./wheels/x.whl) are the agent folder's
        code = await run(argv, self.folder, _tool_env(PIP_NO_INPUT="1"))
        if code != 0:
            raise self._failure(list(run.lines), code, env)

    def _failure(self, lines: list[str], code: int, env: Path) -> DependencyError:
        package, reason = _pip_problem(lines)
        failed_log = env.with_name(env.name + ".failed.log")
        tail = f" (pip exited with code {code}; full log: {failed_log})"
        if not package:
            return DependencyError(self.file, f"pip install failed: {reason}{tail}")
        file, direct = self._declaring_file(package)
        via = "" if direct else f" (a dependency of what {', '.join(self.deps.files)} lists)"
        return DependencyError(
            file, f"package {package!r}{via} cannot be installed: {reason}{tail}", package=package
        )

    def _declaring_file(self, package: str) -> tuple[Path, bool]:
        wanted = _normalize(package)
        if self.deps.requirements_txt:
            lines = requirement_lines(self.folder / REQUIREMENTS)
            if any(_normalize(_requirement_name(line)) == wanted for line in lines):
                return self.shown / REQUIREMENTS, True
        if any(_normalize(_requirement_name(d)) == wanted for d in self.deps.pyproject):
            return self.shown / PYPROJECT, True
        return self.file, False


_PIP_PATTERNS: tuple[tuple[re.Pattern[str], bool], ...] = (
    (re.compile(r"No matching distribution found for (\S+)"), True),
    (re.compile(r"Failed (?:building wheel for|to build) ([A-Za-z0-9][\w.\-]*)"), True),
    (re.compile(r"Could not find a version that satisfies the requirement (\S+)"), True),
    (re.compile(r"Invalid requirement: '?([^']+)'?"), False),
)


def _pip_problem(lines: list[str]) -> tuple[str, str]:
    """``(package, reason)`` of a failed pip install; ``package`` is "" when none is named."""
    errors = [line.removeprefix("ERROR: ").strip() for line in lines if line.startswith("ERROR:")]
    for pattern, names_package in _PIP_PATTERNS:
        for text in reversed(errors or lines):
            match = pattern.search(text)
            if match:
                package = _requirement_name(match.group(1)) if names_package else ""
                return package, text.strip()
    last = next((line.strip() for line in reversed(errors or lines) if line.strip()), "")
    return "", last or "no output"


def _requirement_name(spec: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    return match.group(1) if match else spec.strip()


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- Node.js ---------------------------------------------------------------------------------


_NODE_TAGS: dict[str, str] = {}  # node executable -> its tag (asked once per process)


async def node_tag(file: Path) -> str:
    """``node<major>``: modules with native code are built for one Node.js ABI."""
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        raise DependencyError(
            file, "installing its dependencies needs Node.js (`node` and `npm`) on PATH"
        )
    if node in _NODE_TAGS:
        return _NODE_TAGS[node]
    proc = await asyncio.create_subprocess_exec(
        node, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    match = re.match(r"v(\d+)\.", out.decode(errors="replace"))
    if proc.returncode != 0 or match is None:
        raise DependencyError(file, f"`node --version` failed: {out.decode(errors='replace')!r}")
    _NODE_TAGS[node] = f"node{match.group(1)}"
    return _NODE_TAGS[node]


class NodeBuild(Build):
    kind = "node"

    def __init__(self, folder: Path, shown: Path, deps: NodeDeps, options: InstallOptions):
        self.folder, self.shown, self.deps, self.options = folder, shown, deps, options
        self.file = shown / PACKAGE_JSON
        self.label = f"Node.js dependencies ({PACKAGE_JSON}, {deps.lock})"

    async def __call__(self, env: Path, run: Runner) -> None:
        for name in (PACKAGE_JSON, self.deps.lock, ".npmrc"):
            if (self.folder / name).is_file():
                shutil.copyfile(self.folder / name, env / name)
        npm = shutil.which("npm") or "npm"
        argv = [npm, "ci", "--omit=dev", "--no-audit", "--no-fund", *self.options.npm_args]
        extra = {"npm_config_update_notifier": "false", "NO_UPDATE_NOTIFIER": "1"}
        code = await run(argv, env, _tool_env(**extra))
        if code != 0:
            raise self._failure(list(run.lines), code, env)
        (env / NODE_MODULES).mkdir(exist_ok=True)

    def _failure(self, lines: list[str], code: int, env: Path) -> DependencyError:
        package, reason = _npm_problem(lines)
        failed_log = env.with_name(env.name + ".failed.log")
        tail = f" (npm ci exited with code {code}; full log: {failed_log})"
        lock = self.shown / self.deps.lock
        if "in sync" in reason or "lock file" in reason:
            return DependencyError(
                lock,
                f"does not match {PACKAGE_JSON} ({reason}); run `npm install` in "
                f"{self.shown} to update it{tail}",
                package=package,
            )
        if not package:
            return DependencyError(lock, f"npm ci failed: {reason}{tail}")
        file = self.file if package in self.deps.packages else lock
        via = "" if package in self.deps.packages else f" (locked in {self.deps.lock})"
        return DependencyError(
            file, f"package {package!r}{via} cannot be installed: {reason}{tail}", package=package
        )


_NPM_PACKAGE = r"((?:@[^/\s'\"]+/)?[^@\s'\"/]+)"
_NPM_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(rf"'{_NPM_PACKAGE}@[^']*' (?:is not in this registry|could not be found)"),
    re.compile(rf"No matching version found for {_NPM_PACKAGE}@"),
    re.compile(rf"Missing: {_NPM_PACKAGE}@\S+ from lock file"),
    re.compile(r"404 Not Found - GET \S+/((?:@[^/\s]+(?:/|%2[fF]))?[^/\s]+?)(?:/-/\S+)?(?:\s|$)"),
)


def _npm_problem(lines: list[str]) -> tuple[str, str]:
    """``(package, reason)`` of a failed ``npm ci``; ``package`` is "" when none is named."""
    errors = [
        re.sub(r"^npm (?:error|ERR!)\s*(?:(?:404|notarget|code)\s+)?", "", line).strip()
        for line in lines
        if line.startswith(("npm error", "npm ERR!"))
    ]
    errors = [e for e in errors if e and not e.startswith(("A complete log", "Usage:"))]
    for pattern in _NPM_PATTERNS:
        for text in errors:
            match = pattern.search(text)
            if match:
                package = match.group(1).replace("%2f", "/").replace("%2F", "/")
                return package, text
    reasons = [e for e in errors if not re.fullmatch(r"E[A-Z0-9]+", e)]
    return "", reasons[0] if reasons else (lines[-1].strip() if lines else "no output")
