"""Helpers of scripts/setup.sh for roost's hashed lock files (lock/*.txt). Stdlib only: it
runs before anything else is installed.

    python scripts/lockfile.py split LOCK DIR   write DIR/pip.txt, DIR/llama.txt, DIR/rest.txt
    python scripts/lockfile.py pin LOCK NAME     print NAME's pinned version
    python scripts/lockfile.py check LOCK [--prune]
        compare this interpreter's installed packages with LOCK: exit 1 naming every package
        that is missing or at another version; with --prune, also uninstall (with pip) what
        the lock does not name, so the environment is exactly the lock plus roost.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
#: Installed by hand, never from the lock: roost itself (editable from the work tree).
_NOT_LOCKED = {"roost"}
_OWN_BLOCKS = {"pip": "pip.txt", "llama-cpp-python": "llama.txt"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def blocks(lock: Path) -> list[tuple[str, str, str]]:
    """(canonical name, version, text) of each requirement in ``lock``, with its hashes."""
    found: list[tuple[str, str, str]] = []
    current: list[str] = []
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = [line]
            found.append((canonical(match[1]), match[2], ""))
        elif current and line.startswith("    --hash"):
            current.append(line)
        else:
            current = []
        if current:
            name, version, _ = found[-1]
            found[-1] = (name, version, "\n".join(current) + "\n")
    return found


def split(lock: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = {name: "" for name in [*_OWN_BLOCKS.values(), "rest.txt"]}
    for name, _version, text in blocks(lock):
        files[_OWN_BLOCKS.get(name, "rest.txt")] += text
    for file, text in files.items():
        (out / file).write_text(text)


def check(lock: Path, prune: bool) -> int:
    locked = {name: version for name, version, _ in blocks(lock)}
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = [
        f"{name}=={version} (installed: {installed.get(name, 'missing')})"
        for name, version in sorted(locked.items())
        if installed.get(name) != version
    ]
    extra = sorted(set(installed) - set(locked) - _NOT_LOCKED)
    if wrong:
        print(f"the environment differs from {lock}:", *wrong, sep="\n  ", file=sys.stderr)
        print("fix: rm -rf .venv and run scripts/setup.sh again", file=sys.stderr)
        return 1
    if extra and prune:
        print(
            f"==> removing {len(extra)} packages that {lock} does not name: " + " ".join(extra),
            file=sys.stderr,
        )
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", *extra], check=True)
    print(f"==> installed packages match {lock} ({len(locked)} pinned)", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "split" and len(argv) == 3:
        split(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) == 3 and argv[0] == "pin":
        versions = {name: version for name, version, _ in blocks(Path(argv[1]))}
        print(versions[canonical(argv[2])])
        return 0
    if len(argv) in (2, 3) and argv[0] == "check" and argv[2:] in ([], ["--prune"]):
        return check(Path(argv[1]), prune=argv[2:] == ["--prune"])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
