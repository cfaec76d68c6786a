"""Agent bundles: a deployed agent folder as one gzipped tar, so that workers on any node
can run an agent deployed from another machine.

Bundles are deterministic (sorted entries, zeroed times and owners), so the same folder gives
the same bytes and the same digest. Unpacking refuses anything but plain files and folders
inside the target (no links, devices or ``..`` paths): a bundle is data, never a way to write
outside the agent's folder.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from roost.protocol import ErrorCode, RoostError

#: Names never packed: caches and environments that belong to the machine, not the agent.
IGNORED = frozenset({"__pycache__", ".venv", ".git", "node_modules", ".mypy_cache", ".ruff_cache"})
#: Largest bundle accepted (packed); an agent folder is code and small data, not a data set.
MAX_BUNDLE_BYTES = 64 * 1024 * 1024


class BundleError(RoostError):
    """A folder cannot be packed, or a bundle is malformed or unsafe."""

    code = ErrorCode.INVALID_REQUEST


def pack_folder(folder: Path | str) -> bytes:
    """The folder's files as a deterministic ``.tar.gz``."""
    root = Path(folder)
    if not root.is_dir():
        raise BundleError(f"{root} is not a folder")
    buffer = io.BytesIO()
    # mtime=0 in the gzip header too, or the same files would give other bytes
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in _walk(root):
            rel = path.relative_to(root).as_posix()
            info = tarfile.TarInfo(rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = path.read_bytes()
                info.size = len(data)
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                tar.addfile(info, io.BytesIO(data))
    bundle = buffer.getvalue()
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"{root} packs to {len(bundle) / 1e6:.1f} MB, more than the "
            f"{MAX_BUNDLE_BYTES / 1e6:.0f} MB an agent bundle may be"
        )
    return bundle


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for path in sorted(root.iterdir()):
        if path.name in IGNORED or path.suffix == ".pyc" or path.is_symlink():
            continue
        found.append(path)
        if path.is_dir():
            found.extend(_walk(path))
    return found


def unpack_bundle(bundle: bytes, target: Path | str) -> Path:
    """Unpack ``bundle`` into ``target`` (replacing it) atomically: a reader never sees a
    half-written folder, and two processes unpacking the same version both succeed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        try:
            with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
                for member in tar.getmembers():
                    if not (member.isfile() or member.isdir()):
                        raise BundleError(f"bundle entry {member.name!r} is not a file or folder")
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BundleError(f"malformed agent bundle: {exc}") from exc
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent unpack of the same version
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
