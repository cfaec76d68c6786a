"""The daemon's local policy: what it will do on this machine, whatever the server asks.

The policy file (``policy.toml`` in the daemon's config directory) is the user's, not the
platform's: the gateway and the agents never see or change it, and the daemon checks every
call against it before running anything::

    roots = ["~/src", "/tmp"]          # files and working directories stay inside these
    allow_tools = ["*"]                # tool names (globs); MCP tools are "<server>.<tool>"
    deny_tools = ["github.delete_*"]
    allow_commands = ["*"]             # shell commands, matched on the program name
    deny_commands = ["sudo", "rm", "dd", "mkfs*", "shutdown", "reboot"]
    approve = ["write_file", "shell"]  # tools that need a yes at the daemon's terminal

A deny always wins over an allow. With no file, the defaults above apply, rooted at the
user's home directory.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DENY_COMMANDS = ("sudo", "su", "doas", "mkfs*", "dd", "shutdown", "reboot", "halt")


class PolicyError(Exception):
    """The policy file is invalid (the message names the file and the key)."""


class PolicyDenied(Exception):
    """The policy refuses a call; the message says which rule."""


@dataclass(frozen=True)
class Policy:
    """A loaded policy. ``roots`` are resolved absolute paths."""

    roots: tuple[Path, ...]
    allow_tools: tuple[str, ...] = ("*",)
    deny_tools: tuple[str, ...] = ()
    allow_commands: tuple[str, ...] = ("*",)
    deny_commands: tuple[str, ...] = DEFAULT_DENY_COMMANDS
    approve: tuple[str, ...] = ()
    source: str = "(defaults)"
    extra: dict[str, Any] = field(default_factory=dict)

    # --- checks ------------------------------------------------------------------------

    def check_tool(self, name: str) -> None:
        """Raise :class:`PolicyDenied` unless tool ``name`` may run."""
        if _matches(name, self.deny_tools):
            raise PolicyDenied(f"tool {name!r} is denied by {self.source} (deny_tools)")
        if not _matches(name, self.allow_tools):
            raise PolicyDenied(f"tool {name!r} is not in allow_tools of {self.source}")

    def needs_approval(self, name: str) -> bool:
        return _matches(name, self.approve)

    def check_command(self, command: str) -> None:
        """Raise unless every program of the shell ``command`` may run (each part of a
        pipeline or list is checked, so ``ls; sudo x`` is refused for its ``sudo``)."""
        programs = list(_programs(command))
        if not programs:
            raise PolicyDenied("the command is empty")
        for program in programs:
            if _matches(program, self.deny_commands):
                raise PolicyDenied(
                    f"command {program!r} is denied by {self.source} (deny_commands)"
                )
            if not _matches(program, self.allow_commands):
                raise PolicyDenied(f"command {program!r} is not in allow_commands of {self.source}")

    def resolve_path(self, path: str, *, base: Path | None = None) -> Path:
        """``path`` (relative to ``base``, else the first root) as an absolute path inside
        a root, symlinks resolved; raises :class:`PolicyDenied` for anything outside."""
        if not self.roots:
            raise PolicyDenied(f"no roots are configured in {self.source}: no file access")
        raw = Path(os.path.expanduser(path))
        if not raw.is_absolute():
            raw = (base or self.roots[0]) / raw
        resolved = raw.resolve()
        for root in self.roots:
            if resolved == root or resolved.is_relative_to(root):
                return resolved
        allowed = ", ".join(str(r) for r in self.roots)
        raise PolicyDenied(f"{path!r} is outside the daemon's roots ({allowed})")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


_SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")", "{", "}", "!"}


def _programs(command: str) -> Iterable[str]:
    """The program names a shell command line runs (best effort, conservative: a line
    that cannot be split is one opaque program, which only an allow-all admits)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        yield command
        return
    expect_program = True
    for token in tokens:
        if token in _SEPARATORS or set(token) <= set("|&;()"):
            expect_program = True
            continue
        if expect_program:
            if "=" in token and not token.startswith("="):  # VAR=value before the program
                continue
            yield os.path.basename(token)
            expect_program = token in ("env", "nohup", "time", "exec", "xargs", "command")
        if "$(" in token or "`" in token:  # a command substitution: check what it runs
            inner = token.split("$(", 1)[-1].split("`", 1)[-1].rstrip(")`")
            yield from _programs(inner)


def _strings(
    data: dict[str, Any], key: str, source: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{source}: '{key}' must be a list of strings")
    return tuple(value)


_KEYS = {"roots", "allow_tools", "deny_tools", "allow_commands", "deny_commands", "approve"}


def load_policy(path: Path, *, default_root: Path | None = None) -> Policy:
    """The policy in ``path``, or the defaults (rooted at ``default_root``, else the home
    directory) if there is no such file. Raises :class:`PolicyError` for a bad file."""
    home = (default_root or Path.home()).resolve()
    if not path.is_file():
        return Policy(roots=(home,))
    source = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise PolicyError(
            f"{source}: unknown key {unknown[0]!r} (keys: {', '.join(sorted(_KEYS))})"
        )
    roots = tuple(
        Path(os.path.expanduser(r)).resolve() for r in _strings(data, "roots", source, (str(home),))
    )
    return Policy(
        roots=roots,
        allow_tools=_strings(data, "allow_tools", source, ("*",)),
        deny_tools=_strings(data, "deny_tools", source, ()),
        allow_commands=_strings(data, "allow_commands", source, ("*",)),
        deny_commands=_strings(data, "deny_commands", source, DEFAULT_DENY_COMMANDS),
        approve=_strings(data, "approve", source, ()),
        source=source,
    )
