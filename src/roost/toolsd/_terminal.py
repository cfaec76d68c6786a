"""Terminals: interactive shells on a real PTY, for a browser's terminal on the user's machine.

A terminal is opened by the ``terminal.open`` operation and then lives outside any call:
its output leaves as :class:`~roost.protocol.daemon.TerminalOutput` frames on the daemon's
stream (whichever gateway it is connected to publishes them), keystrokes and resizes come
in as :class:`~roost.protocol.daemon.TerminalInput` frames. Output produced while the
daemon is between gateways is dropped; the shell keeps running.

The policy applies when a terminal opens (the tool name ``terminal`` and its working
directory); what is typed into it is the user's own doing, so ``deny_commands`` does not
apply inside it. Deny the ``terminal`` tool to forbid terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pty
import signal
import struct
import subprocess
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roost.protocol import daemon as wire

log = logging.getLogger("roost.toolsd.terminal")

MAX_TERMINALS = 16
READ_CHUNK = 65536

Emit = Callable[[wire.TerminalOutput], None]


class TerminalError(Exception):
    """A terminal cannot be opened (too many, a bad size); the message says why."""


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """One shell on a PTY."""

    def __init__(self, terminal_id: str, process: subprocess.Popen[bytes], master: int) -> None:
        self.id = terminal_id
        self.process = process
        self.master = master
        self.closed = False

    def write(self, data: bytes) -> None:
        if not self.closed and data:
            with contextlib.suppress(OSError):
                os.write(self.master, data)

    def resize(self, rows: int, cols: int) -> None:
        if not self.closed and rows > 0 and cols > 0:
            with contextlib.suppress(OSError):
                _set_size(self.master, rows, cols)

    def hang_up(self) -> None:
        """End the shell (and what it runs): SIGHUP to its process group, as a closed
        terminal does."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGHUP)


class Terminals:
    """The daemon's open terminals; ``emit`` sends a frame to the connected gateway (``None``:
    not connected, output is dropped)."""

    def __init__(self) -> None:
        self.emit: Emit | None = None
        self.open_terminals: dict[str, Terminal] = {}
        self._reapers: set[asyncio.Task[None]] = set()

    def _send(self, frame: wire.TerminalOutput) -> None:
        if self.emit is not None:
            self.emit(frame)

    def open(self, terminal_id: str, cwd: Path, rows: int = 24, cols: int = 80) -> dict[str, Any]:
        """Start a login-less interactive shell in ``cwd`` on a new PTY."""
        if terminal_id in self.open_terminals:
            return {"terminal": terminal_id, "pid": self.open_terminals[terminal_id].process.pid}
        if len(self.open_terminals) >= MAX_TERMINALS:
            raise TerminalError(f"{MAX_TERMINALS} terminals are open: close one first")
        if not (0 < rows <= 1000 and 0 < cols <= 1000):
            raise TerminalError(f"a terminal of {rows}x{cols} is not a size")
        master, slave = pty.openpty()
        try:
            _set_size(master, rows, cols)
            shell = os.environ.get("SHELL") or "/bin/sh"
            process = subprocess.Popen(
                [shell],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env={**os.environ, "TERM": "xterm-256color"},
                start_new_session=True,  # the PTY becomes its controlling terminal
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        terminal = Terminal(terminal_id, process, master)
        self.open_terminals[terminal_id] = terminal
        asyncio.get_running_loop().add_reader(master, self._readable, terminal)
        log.info("terminal %s: %s (pid %d) in %s", terminal_id, shell, process.pid, cwd)
        return {"terminal": terminal_id, "pid": process.pid, "shell": shell, "cwd": str(cwd)}

    def _readable(self, terminal: Terminal) -> None:
        try:
            data = os.read(terminal.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: the shell and everything on the PTY are gone
            data = b""
        if data:
            self._send(wire.TerminalOutput(terminal=terminal.id, data=data))
            return
        self._finish(terminal)

    def _finish(self, terminal: Terminal) -> None:
        if terminal.closed:
            return
        terminal.closed = True
        loop = asyncio.get_running_loop()
        loop.remove_reader(terminal.master)
        os.close(terminal.master)
        self.open_terminals.pop(terminal.id, None)
        reaper = loop.create_task(self._reap(terminal))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    async def _reap(self, terminal: Terminal) -> None:
        code = await asyncio.to_thread(terminal.process.wait)
        log.info("terminal %s ended (exit %s)", terminal.id, code)
        self._send(wire.TerminalOutput(terminal=terminal.id, closed=True, exit_code=code))

    def input(self, frame: wire.TerminalInput) -> None:
        """Keystrokes, a resize or a close for an open terminal (others are ignored)."""
        terminal = self.open_terminals.get(frame.terminal)
        if terminal is None:
            if not frame.close:
                self._send(wire.TerminalOutput(terminal=frame.terminal, closed=True))
            return
        if frame.rows and frame.cols:
            terminal.resize(frame.rows, frame.cols)
        terminal.write(frame.data)
        if frame.close:
            terminal.hang_up()

    def info(self) -> list[dict[str, Any]]:
        return [{"terminal": t.id, "pid": t.process.pid} for t in self.open_terminals.values()]

    async def close(self) -> None:
        """End every terminal and wait for its shell."""
        loop = asyncio.get_running_loop()
        for terminal in list(self.open_terminals.values()):
            terminal.closed = True
            self.open_terminals.pop(terminal.id, None)
            loop.remove_reader(terminal.master)
            os.close(terminal.master)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(terminal.process.pid, signal.SIGKILL)
            await asyncio.to_thread(terminal.process.wait, 10)
        for reaper in list(self._reapers):
            await reaper
