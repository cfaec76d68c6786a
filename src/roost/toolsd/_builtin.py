"""The daemon's own tools: a shell, files within the policy's roots, background processes.

Each tool is an async function of its JSON arguments returning a JSON value; the policy
is checked before anything runs. Outputs are capped, so a chatty command cannot flood the
stream or the model's context.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.toolsd._policy import Policy, PolicyDenied

OUTPUT_CAP = 64 * 1024
"""Default cap on the output a tool returns (bytes of text)."""
READ_CAP = 1024 * 1024
LIST_CAP = 2000
SEARCH_CAP = 500
LOG_LINES = 2000


class ToolInputError(ValueError):
    """Arguments a tool cannot use (the message says which)."""


def _arg(args: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in args or args[name] is None:
        if default is ...:
            raise ToolInputError(f"missing argument {name!r}")
        return default
    value = args[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ToolInputError(f"argument {name!r} must be {getattr(kind, '__name__', kind)}")
    return value


async def _spawn(command: str, cwd: Path) -> asyncio.subprocess.Process:
    """``command`` in a shell, output (stderr merged) piped, in its own process group so a
    kill takes its children too."""
    return await asyncio.create_subprocess_shell(
        command,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(65536):
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            truncated = True
    return bytes(kept), truncated


@dataclass
class BackgroundProcess:
    """A process started with ``process_start``: its output is kept as a ring of lines."""

    id: str
    command: str
    cwd: str
    process: asyncio.subprocess.Process
    started_at: float = field(default_factory=time.time)
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    exit_code: int | None = None

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "cwd": self.cwd,
            "pid": self.process.pid,
            "running": self.exit_code is None,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
        }


ToolFn = Callable[[dict[str, Any]], Awaitable[Any]]


class Builtins:
    """The built-in tools, bound to a policy (swap :attr:`policy` to reload it)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.processes: dict[str, BackgroundProcess] = {}
        self._next = 0
        self.tools: dict[str, tuple[ToolFn, dict[str, Any]]] = {
            "shell": (self.shell, BUILTIN_SPECS["shell"]),
            "read_file": (self.read_file, BUILTIN_SPECS["read_file"]),
            "write_file": (self.write_file, BUILTIN_SPECS["write_file"]),
            "list_files": (self.list_files, BUILTIN_SPECS["list_files"]),
            "search_files": (self.search_files, BUILTIN_SPECS["search_files"]),
            "process_start": (self.process_start, BUILTIN_SPECS["process_start"]),
            "process_list": (self.process_list, BUILTIN_SPECS["process_list"]),
            "process_kill": (self.process_kill, BUILTIN_SPECS["process_kill"]),
            "process_logs": (self.process_logs, BUILTIN_SPECS["process_logs"]),
        }

    def specs(self) -> list[dict[str, Any]]:
        return [spec for _, spec in self.tools.values()]

    def _cwd(self, args: dict[str, Any]) -> Path:
        cwd = self.policy.resolve_path(_arg(args, "cwd", str, str(self.policy.roots[0])))
        if not cwd.is_dir():
            raise ToolInputError(f"working directory {str(cwd)!r} does not exist")
        return cwd

    # --- shell ----------------------------------------------------------------------------

    async def shell(self, args: dict[str, Any]) -> dict[str, Any]:
        command = _arg(args, "command", str)
        self.policy.check_command(command)
        cwd = self._cwd(args)
        timeout = min(_arg(args, "timeout_s", float, 60.0), 3600.0)
        cap = min(_arg(args, "max_output", int, OUTPUT_CAP), 4 * OUTPUT_CAP)
        started = time.monotonic()
        process = await _spawn(command, cwd)
        assert process.stdout is not None
        timed_out = False
        try:
            output, truncated = await asyncio.wait_for(_read_capped(process.stdout, cap), timeout)
            code = await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            timed_out, output, truncated = True, b"", False
            _kill_group(process)
            code = await process.wait()
        except BaseException:  # cancelled: the command dies with the call
            _kill_group(process)
            raise
        finally:
            if process.returncode is None:
                _kill_group(process)
        text = output.decode("utf-8", errors="replace")
        if timed_out:
            text += f"\n(killed after {timeout:g}s)"  # keep what it wrote before
        return {
            "exit_code": code,
            "output": text,
            "truncated": truncated,
            "timed_out": timed_out,
            "duration_s": round(time.monotonic() - started, 3),
        }

    # --- files ----------------------------------------------------------------------------

    async def read_file(self, args: dict[str, Any]) -> dict[str, Any]:
        path = self.policy.resolve_path(_arg(args, "path", str))
        offset = max(_arg(args, "offset", int, 0), 0)
        limit = min(max(_arg(args, "limit", int, READ_CAP), 0), READ_CAP)
        if not path.is_file():
            raise ToolInputError(f"{str(path)!r} is not a file")

        def read() -> tuple[bytes, int]:
            with path.open("rb") as handle:
                handle.seek(offset)
                return handle.read(limit), path.stat().st_size

        data, size = await asyncio.to_thread(read)
        try:
            content, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            content, encoding = base64.b64encode(data).decode(), "base64"
        return {
            "path": str(path),
            "content": content,
            "encoding": encoding,
            "size": size,
            "truncated": offset + len(data) < size,
        }

    async def write_file(self, args: dict[str, Any]) -> dict[str, Any]:
        path = self.policy.resolve_path(_arg(args, "path", str))
        content = _arg(args, "content", str)
        encoding = _arg(args, "encoding", str, "utf-8")
        append = _arg(args, "append", bool, False)
        if encoding not in ("utf-8", "base64"):
            raise ToolInputError("encoding must be 'utf-8' or 'base64'")
        data = base64.b64decode(content) if encoding == "base64" else content.encode()

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab" if append else "wb") as handle:
                handle.write(data)

        await asyncio.to_thread(write)
        return {"path": str(path), "bytes": len(data), "appended": append}

    async def list_files(self, args: dict[str, Any]) -> dict[str, Any]:
        path = self.policy.resolve_path(_arg(args, "path", str, "."))
        pattern = _arg(args, "pattern", str, "*")
        recursive = _arg(args, "recursive", bool, False)
        if not path.is_dir():
            raise ToolInputError(f"{str(path)!r} is not a directory")

        def listing() -> tuple[list[dict[str, Any]], bool]:
            found = path.rglob(pattern) if recursive else path.glob(pattern)
            entries: list[dict[str, Any]] = []
            for entry in found:
                if len(entries) >= LIST_CAP:
                    return entries, True
                with contextlib.suppress(OSError):
                    stat = entry.lstat()
                    entries.append({
                        "path": str(entry.relative_to(path)),
                        "type": "dir" if entry.is_dir() else "file",
                        "size": stat.st_size,
                        "modified": stat.st_mtime,
                    })  # fmt: skip
            return sorted(entries, key=lambda e: e["path"]), False

        entries, truncated = await asyncio.to_thread(listing)
        return {"path": str(path), "entries": entries, "truncated": truncated}

    async def search_files(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            regex = re.compile(_arg(args, "pattern", str))
        except re.error as exc:
            raise ToolInputError(f"pattern is not a regular expression: {exc}") from None
        path = self.policy.resolve_path(_arg(args, "path", str, "."))
        glob = _arg(args, "glob", str, "*")

        def search() -> tuple[list[str], bool]:
            matches: list[str] = []
            files = [path] if path.is_file() else (p for p in path.rglob(glob) if p.is_file())
            for file in files:
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    if file.stat().st_size > READ_CAP * 8:
                        continue
                    for number, line in enumerate(file.read_text().splitlines(), 1):
                        if regex.search(line):
                            where = file.relative_to(path) if file != path else file.name
                            matches.append(f"{where}:{number}: {line[:300]}")
                            if len(matches) >= SEARCH_CAP:
                                return matches, True
            return matches, False

        matches, truncated = await asyncio.to_thread(search)
        return {"path": str(path), "matches": matches, "truncated": truncated}

    # --- background processes -------------------------------------------------------------

    async def process_start(self, args: dict[str, Any]) -> dict[str, Any]:
        command = _arg(args, "command", str)
        self.policy.check_command(command)
        cwd = self._cwd(args)
        process = await _spawn(command, cwd)
        self._next += 1
        record = BackgroundProcess(f"p{self._next}", command, str(cwd), process)
        self.processes[record.id] = record
        asyncio.get_running_loop().create_task(self._collect(record))
        return record.info()

    async def _collect(self, record: BackgroundProcess) -> None:
        assert record.process.stdout is not None
        async for raw in record.process.stdout:
            record.lines.append(raw.decode("utf-8", errors="replace").rstrip("\n"))
        record.exit_code = await record.process.wait()

    async def process_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"processes": [p.info() for p in self.processes.values()]}

    def _process(self, args: dict[str, Any]) -> BackgroundProcess:
        pid = _arg(args, "id", str)
        record = self.processes.get(pid)
        if record is None:
            raise ToolInputError(f"no background process {pid!r} (see process_list)")
        return record

    async def process_kill(self, args: dict[str, Any]) -> dict[str, Any]:
        record = self._process(args)
        if record.exit_code is None:
            _kill_group(record.process)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(record.process.wait(), 5.0)
        return record.info()

    async def process_logs(self, args: dict[str, Any]) -> dict[str, Any]:
        record = self._process(args)
        tail = min(max(_arg(args, "tail", int, 200), 1), LOG_LINES)
        return {**record.info(), "lines": list(record.lines)[-tail:]}

    async def close(self) -> None:
        for record in self.processes.values():
            if record.exit_code is None:
                _kill_group(record.process)


def _spec(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required},
    }


_STR = {"type": "string"}
_CWD = {"type": "string", "description": "working directory (inside the daemon's roots)"}
#: The built-in tools' specs (name, description, JSON-schema parameters), by name.
BUILTIN_SPECS: dict[str, dict[str, Any]] = {
    "shell": _spec(
        "shell",
        "Run a shell command on the user's machine; returns its exit code and output.",
        {
            "command": {**_STR, "description": "the command line"},
            "cwd": _CWD,
            "timeout_s": {"type": "number", "description": "kill it after this many seconds"},
            "max_output": {"type": "integer", "description": "cap on the output, in bytes"},
        },
        ["command"],
    ),
    "read_file": _spec(
        "read_file",
        "Read a file on the user's machine (text, or base64 for binary data).",
        {"path": _STR, "offset": {"type": "integer"}, "limit": {"type": "integer"}},
        ["path"],
    ),
    "write_file": _spec(
        "write_file",
        "Write (or append to) a file on the user's machine.",
        {
            "path": _STR,
            "content": _STR,
            "encoding": {"type": "string", "enum": ["utf-8", "base64"]},
            "append": {"type": "boolean"},
        },
        ["path", "content"],
    ),
    "list_files": _spec(
        "list_files",
        "List a directory on the user's machine (glob pattern, optionally recursive).",
        {"path": _STR, "pattern": _STR, "recursive": {"type": "boolean"}},
        [],
    ),
    "search_files": _spec(
        "search_files",
        "Search files on the user's machine for a regular expression; returns path:line: text.",
        {"pattern": _STR, "path": _STR, "glob": _STR},
        ["pattern"],
    ),
    "process_start": _spec(
        "process_start",
        "Start a long-running command in the background on the user's machine.",
        {"command": _STR, "cwd": _CWD},
        ["command"],
    ),
    "process_list": _spec("process_list", "List the background processes.", {}, []),
    "process_kill": _spec("process_kill", "Kill a background process.", {"id": _STR}, ["id"]),
    "process_logs": _spec(
        "process_logs",
        "The last lines a background process printed.",
        {"id": _STR, "tail": {"type": "integer"}},
        ["id"],
    ),
}

__all__ = ["OUTPUT_CAP", "BackgroundProcess", "Builtins", "PolicyDenied", "ToolInputError"]
