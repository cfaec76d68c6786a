"""The installation is what the lock says, and its llama.cpp build runs on any x86-64 CPU.

scripts/setup.sh installs from lock/*.txt; these tests catch an environment that drifted
from the lock (a leftover from an earlier install, a hand-installed package) and a llama.cpp
built with this machine's native CPU flags (which segfaults on another CPU kind).
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import lockfile  # noqa: E402

#: Instruction sets beyond x86-64-v3 (AVX2/FMA/F16C): a build that uses one of them crashes
#: (SIGILL or a miscompiled kernel) on CPUs without it.
NATIVE_ONLY = ("AVX512", "AVX_VNNI", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8", "AMX_BF16")


def test_every_locked_package_is_installed_at_its_pinned_version() -> None:
    lock = ROOT / "lock" / "dev.txt"
    installed = {
        lockfile.canonical(d.metadata["Name"]): d.version for d in metadata.distributions()
    }
    wrong = {
        name: (version, installed.get(name))
        for name, version, _ in lockfile.blocks(lock)
        if installed.get(name) != version
    }
    assert not wrong, f"not as locked (pinned, installed): {wrong}"


def test_the_run_lock_is_a_subset_of_the_dev_lock_at_the_same_versions() -> None:
    dev = {name: version for name, version, _ in lockfile.blocks(ROOT / "lock" / "dev.txt")}
    run = {name: version for name, version, _ in lockfile.blocks(ROOT / "lock" / "run.txt")}
    assert "llama-cpp-python" in run and "torch" in run
    assert {name: dev.get(name) for name in run} == run


def test_every_locked_package_has_a_hash() -> None:
    for lock in ("dev.txt", "run.txt"):
        for name, _version, text in lockfile.blocks(ROOT / "lock" / lock):
            assert "--hash=sha256:" in text, f"{lock}: {name} has no hash"


def test_llama_cpp_is_built_for_any_x86_64_cpu() -> None:
    pytest.importorskip("llama_cpp")
    info = subprocess.run(
        [sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    used = {
        part.split("=")[0].split(":")[-1].strip()
        for part in info.split("|")
        if part.strip().endswith("= 1")
    }
    assert "AVX2" in used, info
    assert not used & set(NATIVE_ONLY), f"llama.cpp uses native-only instructions: {info}"
