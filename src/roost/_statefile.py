"""Versioned state files that processes share (``roostd.json``, ``cluster.json``): one
reader and one writer, so every such file reports problems the same way.

A file is a msgspec struct with a ``version`` field. The reader checks the version first,
so a file of another version is reported as that (with what to do about it) rather than as
whatever field its shape happens to break; then it decodes the whole struct, naming the
field that is wrong. The writer writes indented JSON (people read these files too),
atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import msgspec

from roost._proc import write_atomic

T = TypeVar("T")


class StateFileError(ValueError):
    """A state file that cannot be used: unreadable, not of its shape, or of a version this
    code does not read. The message says which and names the file."""

    def __init__(self, path: Path, message: str, *, version: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.version = version
        """The version the file has when that is the problem (None otherwise)."""


class _Versioned(msgspec.Struct):
    version: int


def read_state_file(
    path: Path,
    type: type[T],
    *,
    version: int,
    what: str,
    writer: str,
    advice: str,
    error: type[StateFileError] = StateFileError,
) -> T:
    """The ``type`` in ``path``, of ``version``. ``what`` names the file's content in
    messages ("dev cluster state"), ``writer`` what writes it ("roost", "roostd") and
    ``advice`` what to do about another version. Raises :class:`FileNotFoundError` when
    there is no file, and ``error`` (a :class:`StateFileError`) for any other problem."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(path, f"unreadable {what} {path}: {exc}") from None
    try:
        found = msgspec.json.decode(data, type=_Versioned).version
        if found != version:
            age = "a newer" if found > version else "an older"
            raise error(
                path,
                f"{path} has {what} version {found} (written by {age} {writer}); this roost "
                f"reads version {version}: {advice}",
                version=found,
            )
        return msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as exc:  # before DecodeError, its base class
        raise error(path, f"{path} is not a {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise error(path, f"unreadable {what} {path}: {exc}") from None


def write_state_file(path: Path, value: msgspec.Struct) -> None:
    """Write ``value`` to ``path`` atomically, as indented JSON."""
    text = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    write_atomic(path, text + "\n")


__all__ = ["StateFileError", "read_state_file", "write_state_file"]
