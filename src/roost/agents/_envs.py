"""Preparing an agent version's environments: cached by bundle digest, built once.

An environment lives under ``ROOT/<bundle digest>/<kind>``; an install holds a ``flock``
next to it (concurrent installs of one digest wait for each other, across processes), builds
in place and writes the ready marker last, so an environment without the marker is the
leftover of a crash and is rebuilt. A failed install removes what it made and keeps its log
as ``<kind>.failed.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from roost._proc import write_atomic
from roost.agents._deps import (
    INSTALL_LOG,
    NODE_MODULES,
    PACKAGE_JSON,
    READY,
    VENV_LINK,
    DependencyError,
    OutputCallback,
    find_dependencies,
    link_environment,
    ready,
)
from roost.agents._installers import (
    Build,
    InstallOptions,
    NodeBuild,
    PythonBuild,
    Runner,
    node_tag,
    python_tag,
)

log = logging.getLogger("roost.agents.deps")

_LOCK_POLL_S = 0.1


@dataclass(frozen=True)
class PreparedEnv:
    """One environment of an agent version."""

    kind: str
    """``python`` or ``node``."""
    path: Path
    cached: bool
    """Found complete (nothing was installed)."""
    seconds: float


async def prepare_environment(
    folder: Path | str,
    digest: str,
    options: InstallOptions,
    *,
    on_output: OutputCallback | None = None,
    named_as: Path | str | None = None,
) -> list[PreparedEnv]:
    """Install what ``folder`` (an agent version's files) declares into the environments
    of bundle ``digest`` unless they are complete already, and link them into ``folder``.

    ``on_output`` gets the build's output live; errors (:class:`DependencyError`) name the
    files under ``named_as`` (the user's folder, default ``folder``)."""
    folder = Path(folder)
    shown = Path(named_as) if named_as is not None else folder
    if not re.fullmatch(r"[0-9a-f]{16,128}", digest):
        raise ValueError(f"not a bundle digest: {digest!r}")
    deps = find_dependencies(folder, named_as=shown)
    say: OutputCallback = on_output or (lambda line: log.info("%s", line))
    prepared: list[PreparedEnv] = []
    if deps.python is not None:
        env = await _ensure(
            options.root / digest / python_tag(),
            PythonBuild(folder, shown, deps.python, options),
            options.timeout_s,
            say,
        )
        link_environment(folder / VENV_LINK, env.path)
        prepared.append(env)
    if deps.node is not None:
        tag = await node_tag(shown / PACKAGE_JSON)
        env = await _ensure(
            options.root / digest / tag,
            NodeBuild(folder, shown, deps.node, options),
            options.timeout_s,
            say,
        )
        link_environment(folder / NODE_MODULES, env.path / NODE_MODULES)
        prepared.append(env)
    return prepared


async def _ensure(env: Path, build: Build, timeout_s: float, say: OutputCallback) -> PreparedEnv:
    started = time.monotonic()
    if ready(env):
        say(f"{build.label}: using the environment cached for this bundle ({env})")
        return PreparedEnv(build.kind, env, True, 0.0)
    env.parent.mkdir(parents=True, exist_ok=True)
    # waiting for another install of this digest takes at most its timeout, plus slack
    async with _locked(env.with_name(env.name + ".lock"), timeout_s + 30, build, say):
        if ready(env):  # another process finished it while this one waited
            say(f"{build.label}: using the environment another install just made ({env})")
            return PreparedEnv(build.kind, env, True, time.monotonic() - started)
        shutil.rmtree(env, ignore_errors=True)  # what a crashed install left
        env.mkdir()
        failed_log = env.with_name(env.name + ".failed.log")
        say(f"{build.label}: installing into {env}")
        try:
            with (env / INSTALL_LOG).open("w") as log_file:
                runner = Runner(log_file, say, time.monotonic() + timeout_s, timeout_s, build)
                await build(env, runner)
        except BaseException:
            with contextlib.suppress(OSError):
                shutil.copyfile(env / INSTALL_LOG, failed_log)
            shutil.rmtree(env, ignore_errors=True)
            raise
        seconds = time.monotonic() - started
        marker = {"kind": build.kind, "built_at": time.time(), "seconds": round(seconds, 3)}
        write_atomic(env / READY, json.dumps(marker) + "\n")
        failed_log.unlink(missing_ok=True)
        say(f"{build.label}: installed in {seconds:.1f}s")
        return PreparedEnv(build.kind, env, False, seconds)


@contextlib.asynccontextmanager
async def _locked(
    path: Path, timeout_s: float, build: Build, say: OutputCallback
) -> AsyncIterator[None]:
    """An exclusive ``flock`` on ``path`` (released by the kernel if this process dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DependencyError(
                        build.file,
                        f"another install of this bundle's {build.kind} environment holds "
                        f"{path} for more than {timeout_s:g}s",
                    ) from None
                if not told:
                    say(f"{build.label}: waiting for another install of the same files")
                    told = True
                await asyncio.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(fd)
