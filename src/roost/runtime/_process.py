"""``runtime = "process"``: agents written in any language, run as local HTTP servers.

The contract between roost and a process agent (the example in ``examples/process-agent``
shows it end to end):

**Lifetime.** The runtime starts the agent's command (``entry`` in ``agent.toml``) once per
deployed agent version, in the agent's folder, in a process group of its own, and keeps it
running for later invocations. A leading ``python`` / ``python3`` runs as the agent's own venv
interpreter when the version declares Python dependencies (``requirements.txt``,
``pyproject.toml``: roost installs them into a venv of that version, linked as ``.venv``),
else as the interpreter roost itself runs under (``sys.executable``), so Python agents
without dependencies of their own can use whatever roost's environment has installed; a
program that is a file in the agent folder runs from there; anything else is looked up on
``PATH``, with the agent's ``.venv/bin`` and ``node_modules/.bin`` first. A process that
died is restarted on the next invocation. When a newer version of the agent starts, older
versions are stopped once idle; ``close()`` stops them all (``SIGTERM`` to the process
group, ``SIGKILL`` after a grace period).

**Environment.** The parent's environment, plus the manifest's ``env``, plus:
``PORT`` (listen on ``127.0.0.1:$PORT``), ``ROOST_PROVIDER_URL`` and ``OPENAI_BASE_URL`` (the
provider's OpenAI base URL, ``http://127.0.0.1:<p>/v1``), ``ROOST_PROVIDER_ROOT`` (the root,
for the ``/kv`` and ``/vectors`` routes), ``ROOST_AGENT`` and ``ROOST_AGENT_VERSION``, and
``VIRTUAL_ENV`` when the agent has a venv. There is deliberately no process-wide API key:
credentials belong to one invocation.

**Health.** The process must answer ``GET /health`` with status 200 within
``start_timeout_s`` (otherwise the start fails with the tail of its stderr).

**Invocation.** Each run is one ``POST /invoke`` with the JSON body::

    {"input": <the run's input>, "agent": "name", "version": 3,
     "session": "...", "branch": "main", "invocation_id": "...",
     "history": [{"input": ..., "output": ...}, ...],   # earlier turns of this branch
     "timeout_s": 297.5,                                 # time left for this run
     "provider": {"base_url": "http://127.0.0.1:<p>/v1",  # OpenAI base_url
                  "url": "http://127.0.0.1:<p>",          # root: /kv, /vectors, /tools, ...
                  "api_key": "roost-...",                # bearer token of THIS invocation
                  "chat_model": "...", "embedding_model": "..."}}

The agent answers ``2xx`` with ``{"output": <any JSON>}``, or a non-2xx status with
``{"error": "what went wrong"}`` (or any text), which fails the run with that text. Calls made
with ``provider.api_key`` are recorded in the invocation's session; the key stops working when
the invocation ends.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import shutil
import signal
import sys
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from roost._proc import free_port, guarded_argv, signal_group
from roost.agents import AgentManifest, agent_path, agent_venv
from roost.protocol import AgentError, ServiceTimeoutError, dumps
from roost.runtime._context import AgentContext
from roost.runtime._provider import ProviderEndpoint
from roost.stores import AgentRecord

log = logging.getLogger("roost.runtime.process")

_PYTHON_NAMES = ("python", "python3")
_LIVE_RUNTIMES: weakref.WeakSet[ProcessRuntime] = weakref.WeakSet()
_MAX_LINE = 1 << 20


def resolve_command(command: Sequence[str], cwd: str | Path) -> list[str]:
    """The argv to execute for a process agent's ``command`` run in ``cwd``.

    A leading ``python``/``python3`` becomes the interpreter of the agent's venv
    (``cwd/.venv``) if it has one, else ``sys.executable``; a program that exists as a file
    in ``cwd`` becomes its absolute path; anything else is left for ``PATH`` lookup.
    """
    if not command:
        raise AgentError("the process runtime needs a command to start (manifest 'entry')")
    program, *rest = list(command)
    if program in _PYTHON_NAMES:
        venv = agent_venv(cwd)
        program = str(venv / "bin" / "python") if venv is not None else sys.executable
    elif not os.path.isabs(program) and (Path(cwd) / program).is_file():
        program = str((Path(cwd) / program).resolve())
    return [program, *rest]


@dataclass(eq=False)
class _AgentProcess:
    """One running agent process and what the runtime knows about it."""

    name: str
    version: int
    command: list[str]
    proc: asyncio.subprocess.Process
    port: int
    stderr_tail: deque[str]
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    active: int = 0
    retired: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    @property
    def label(self) -> str:
        return f"agent {self.name!r} (version {self.version})"

    def tail(self) -> str:
        if not self.stderr_tail:
            return " (its stderr was empty)"
        return "\n--- last lines of its stderr ---\n" + "\n".join(self.stderr_tail)


class ProcessRuntime:
    """Runs ``runtime = "process"`` agents (see the module documentation for the contract).

    ``provider`` is the endpoint the agents call back into; it is started on first use. Pass
    a shared one (the platform does, and stops it itself); without one the runtime makes its
    own and stops it in :meth:`close`.
    """

    def __init__(
        self,
        provider: ProviderEndpoint | None = None,
        *,
        start_timeout_s: float = 30.0,
        stop_grace_s: float = 5.0,
        stderr_tail_lines: int = 40,
        prepare: Callable[[AgentRecord], Awaitable[AgentRecord]] | None = None,
    ) -> None:
        self.provider = provider if provider is not None else ProviderEndpoint()
        self.prepare = prepare
        """Called before a version's process starts: makes its files and environments
        ready on this node (the platform's, which unpacks bundles and installs
        dependencies) and returns the record with this node's path."""
        self._owns_provider = provider is None
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.stderr_tail_lines = stderr_tail_lines
        self.starts = 0
        """How many agent processes this runtime has started (restarts included)."""
        self._procs: dict[tuple[str, int], _AgentProcess] = {}
        self._all: set[_AgentProcess] = set()  # every process not yet stopped and reaped
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        _LIVE_RUNTIMES.add(self)

    @property
    def processes(self) -> dict[tuple[str, int], int]:
        """Pid of the running process of each ``(agent name, version)``."""
        return {key: p.pid for key, p in self._procs.items() if p.alive}

    def pid(self, name: str, version: int) -> int | None:
        """Pid of the running process of agent ``name`` at ``version``, if any."""
        return self.processes.get((name, version))

    # --- running ------------------------------------------------------------------------

    async def run(self, ctx: AgentContext, agent: AgentRecord, manifest: AgentManifest) -> Any:
        """Run one invocation: make sure the agent's process is up, then ``POST /invoke``."""
        if self._closed:
            raise AgentError("the process runtime is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (manifest.timeout_s or ctx.invocation.timeout_s)
        await self.provider.start()
        process = await self._ensure(agent, manifest, deadline)
        process.active += 1
        token = self.provider.open_session(ctx)
        try:
            return await self._invoke(process, ctx, token, deadline)
        finally:
            self.provider.close_session(token)
            process.active -= 1
            if process.retired and process.active == 0:
                self._spawn(self._stop(process))

    async def _ensure(
        self, agent: AgentRecord, manifest: AgentManifest, deadline: float
    ) -> _AgentProcess:
        key = (agent.name, agent.version)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            process = self._procs.get(key)
            if process is not None and process.alive:
                return process
            if process is not None:
                log.warning(
                    "%s: process %d exited with code %s; restarting it%s",
                    process.label,
                    process.pid,
                    process.proc.returncode,
                    process.tail(),
                )
                del self._procs[key]
                await self._stop(process)
            if self.prepare is not None:
                agent = await self.prepare(agent)
            remaining = deadline - asyncio.get_running_loop().time()
            process = await self._start(agent, manifest)
            try:
                await self._wait_healthy(process, min(self.start_timeout_s, remaining))
            except BaseException:
                await asyncio.shield(self._stop(process))
                raise
            if self._closed:  # closed while this process was starting
                await self._stop(process)
                raise AgentError("the process runtime is closed")
            self._procs[key] = process
            self._retire_older(agent.name, agent.version)
            return process

    async def _start(self, agent: AgentRecord, manifest: AgentManifest) -> _AgentProcess:
        command = resolve_command(manifest.command, agent.path)
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **manifest.env}
        env.update(
            PORT=str(port),
            ROOST_PROVIDER_URL=self.provider.api_base,
            OPENAI_BASE_URL=self.provider.api_base,
            ROOST_PROVIDER_ROOT=self.provider.url,
            ROOST_AGENT=agent.name,
            ROOST_AGENT_VERSION=str(agent.version),
            PATH=agent_path(agent.path, env.get("PATH")),
        )
        venv = agent_venv(agent.path)
        if venv is not None:
            env["VIRTUAL_ENV"] = str(venv)
        # never send the agent's calls to the local provider through an HTTP proxy
        for name in ("NO_PROXY", "no_proxy"):
            env[name] = ",".join(p for p in (env.get(name, ""), "127.0.0.1,localhost") if p)
        label = f"agent {agent.name!r} (version {agent.version})"
        program = _find_program(command[0], env.get("PATH"), f"{label}: cannot start")
        command = [program, *command[1:]]
        try:
            proc = await asyncio.create_subprocess_exec(
                # on Linux the kernel SIGTERMs the agent should this process die, even by
                # SIGKILL; elsewhere, and for the agent's own children, the graceful stop and
                # the exit hook below are what clean up
                *guarded_argv(command),
                cwd=agent.path,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # own process group: stopped as a whole, no orphans
                limit=_MAX_LINE,
            )
        except FileNotFoundError:
            raise AgentError(
                f"{label}: cannot start {command[0]!r}: no such program in {agent.path} or PATH"
            ) from None
        except PermissionError:
            raise AgentError(f"{label}: cannot start {command[0]!r}: not executable") from None
        except OSError as exc:
            raise AgentError(f"{label}: cannot start {command[0]!r}: {exc}") from None
        self.starts += 1
        process = _AgentProcess(
            name=agent.name,
            version=agent.version,
            command=command,
            proc=proc,
            port=port,
            stderr_tail=deque(maxlen=self.stderr_tail_lines),
        )
        self._all.add(process)
        agent_log = logging.getLogger(f"roost.agent.{agent.name}")
        assert proc.stdout is not None and proc.stderr is not None
        process.readers = [
            asyncio.create_task(_pump(proc.stdout, agent_log, None)),
            asyncio.create_task(_pump(proc.stderr, agent_log, process.stderr_tail)),
        ]
        log.info("%s: started %s as pid %d on port %d", label, command, proc.pid, port)
        return process

    async def _wait_healthy(self, process: _AgentProcess, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        client = self._http()
        delay = 0.02
        last = "no attempt"
        while True:
            if not process.alive:
                await _drain(process)
                raise AgentError(
                    f"{process.label}: its process `{' '.join(process.command)}` exited with "
                    f"code {process.proc.returncode} before answering GET /health" + process.tail()
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                response = await client.get(
                    process.url + "/health", timeout=min(2.0, max(remaining, 0.05))
                )
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                last = _describe(exc)
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0.0)))
            delay = min(delay * 1.5, 0.25)
        raise AgentError(
            f"{process.label} did not become healthy: its process "
            f"`{' '.join(process.command)}` (pid {process.pid}) did not answer "
            f"GET {process.url}/health with 200 within {timeout:.3g}s (last attempt: {last}); "
            "it must serve HTTP on 127.0.0.1:$PORT" + process.tail()
        )

    async def _invoke(
        self, process: _AgentProcess, ctx: AgentContext, token: str, deadline: float
    ) -> Any:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise ServiceTimeoutError(f"{process.label}: no time left for the invocation")
        body = {
            "input": ctx.invocation.input,
            "agent": process.name,
            "version": process.version,
            "session": ctx.session,
            "branch": ctx.branch,
            "invocation_id": ctx.invocation_id,
            "history": [{"input": i, "output": o} for i, o in ctx.history],
            "timeout_s": round(remaining, 3),
            "provider": {
                "base_url": self.provider.api_base,
                "url": self.provider.url,
                "api_key": token,
                "chat_model": ctx.chat_model,
                "embedding_model": ctx.embedding_model,
            },
        }
        try:
            response = await self._http().post(
                process.url + "/invoke",
                content=dumps(body),
                headers={"content-type": "application/json"},
                timeout=httpx.Timeout(remaining, connect=min(5.0, remaining)),
            )
        except httpx.TimeoutException:
            raise ServiceTimeoutError(
                f"{process.label} did not answer POST /invoke within {remaining:.3g}s"
            ) from None
        except httpx.TransportError as exc:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.proc.wait()), 1.0)
            if not process.alive:
                await _drain(process)
                raise AgentError(
                    f"{process.label}: its process exited with code {process.proc.returncode} "
                    "during the invocation" + process.tail()
                ) from None
            raise AgentError(
                f"{process.label}: POST {process.url}/invoke failed: {_describe(exc)}"
            ) from None
        return _output_of(process, response)

    # --- stopping -----------------------------------------------------------------------

    def _retire_older(self, name: str, version: int) -> None:
        for key, process in list(self._procs.items()):
            if key[0] == name and key[1] < version:
                del self._procs[key]
                process.retired = True
                log.info("%s is superseded by version %d; stopping it", process.label, version)
                if process.active == 0:
                    self._spawn(self._stop(process))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _stop(self, process: _AgentProcess) -> None:
        """Stop ``process`` and its process group (TERM, then KILL after the grace period)."""
        if process.alive:
            signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(process.proc.wait()), self.stop_grace_s)
            except TimeoutError:
                log.warning(
                    "%s: pid %d ignored SIGTERM for %gs; killing it",
                    process.label,
                    process.pid,
                    self.stop_grace_s,
                )
        signal_group(process.pid, signal.SIGKILL)  # the process and anything it left behind
        await process.proc.wait()
        await _drain(process)
        self._all.discard(process)

    async def close(self) -> None:
        """Stop every agent process (and the provider, if this runtime made it)."""
        self._closed = True
        self._procs.clear()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(self._stop(p) for p in list(self._all)), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._owns_provider:
            await self.provider.stop()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: agents are on 127.0.0.1, never behind a proxy
            self._client = httpx.AsyncClient(trust_env=False)
        return self._client


# --- helpers --------------------------------------------------------------------------------


def _output_of(process: _AgentProcess, response: httpx.Response) -> Any:
    if not response.is_success:
        raise AgentError(
            f"{process.label} failed (HTTP {response.status_code}): {_error_text(response)}",
            status=response.status_code,
        )
    try:
        body = response.json()
    except ValueError:
        raise AgentError(
            f"{process.label} answered /invoke with a body that is not JSON: "
            f"{response.text[:500]!r}"
        ) from None
    if not isinstance(body, dict) or "output" not in body:
        raise AgentError(
            f"{process.label} answered /invoke without an 'output' field "
            f'(expected {{"output": ...}}, got {response.text[:500]!r})'
        )
    return body["output"]


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:2000] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return response.text.strip()[:2000]


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _pump(
    stream: asyncio.StreamReader, logger: logging.Logger, tail: deque[str] | None
) -> None:
    """Log each line of an agent's output stream (keeping the last ones in ``tail``)."""
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line longer than the limit: take what is there
            raw = await stream.read(_MAX_LINE)
        if not raw:
            return
        line = raw.decode(errors="replace").rstrip()
        if tail is not None:
            tail.append(line)
        logger.info("%s", line)


async def _drain(process: _AgentProcess) -> None:
    """Let the output readers reach end of stream (so the stderr tail is complete)."""
    if process.readers:
        _, pending = await asyncio.wait(process.readers, timeout=1.0)
        for task in pending:
            task.cancel()


def _find_program(program: str, path: str | None, failing: str) -> str:
    """The program's path, or the error its exec would give: behind the guard the exec
    happens in the child, where a failure would only show as an early exit. (Programs in
    the agent's folder are absolute paths by now: see :func:`resolve_command`.)"""
    found = program if os.path.isabs(program) else shutil.which(program, os.F_OK, path)
    if found is None or not os.path.isfile(found):
        raise AgentError(f"{failing} {program!r}: no such program in the agent's folder or PATH")
    if not os.access(found, os.X_OK):
        raise AgentError(f"{failing} {program!r}: not executable")
    return found


@atexit.register
def _kill_leftovers() -> None:
    """Last resort at interpreter exit: no agent process outlives roost."""
    for runtime in list(_LIVE_RUNTIMES):
        for process in list(runtime._all):
            if process.alive:
                signal_group(process.pid, signal.SIGKILL)


__all__ = ["ProcessRuntime", "resolve_command"]
