"""``roost doctor``: a real check of this installation, and clear FAIL lines when it breaks."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from cli_helpers import cli_env, run_cli
from roost.doctor._checks import check_home, check_model, probe_verdict
from roost.stores._records import ModelRecord

SMOL = ModelRecord(name="smollm2", kind="chat", engine="llama-cpp", target="/m/smol.gguf")


def test_a_crashed_probe_names_the_signal_and_the_fix() -> None:
    result = probe_verdict("chat model", SMOL, "'smollm2'", -signal.SIGSEGV, b"", b"")
    assert result.failed
    assert "crashed (SIGSEGV)" in result.detail
    assert "scripts/setup.sh" in result.fix


def test_a_probe_error_and_a_probe_success() -> None:
    bad = probe_verdict("chat model", SMOL, "'smollm2'", 1, b'{"error": "no such file"}\n', b"")
    assert bad.failed and "no such file" in bad.detail
    good = probe_verdict("chat model", SMOL, "'smollm2'", 0, b'noise\n{"detail": "fine"}\n', b"")
    assert good.status == "ok" and good.detail.endswith("fine")
    silent = probe_verdict("chat model", SMOL, "'smollm2'", 1, b"", b"Traceback\nImportError: x\n")
    assert silent.failed and "ImportError: x" in silent.detail


def test_an_unwritable_home_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = check_home(blocker / "home")
    assert result.failed and "not writable" in result.detail


async def test_a_missing_model_fails_with_its_fix() -> None:
    result = await check_model(None, "nope", "chat")
    assert result.failed and "'nope'" in result.detail and "roost model add" in result.fix


@pytest.mark.model
@pytest.mark.e2e
def test_doctor_passes_on_this_install(tmp_path: Path) -> None:
    done = run_cli(cli_env(tmp_path / "home"), "doctor", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")]
    for name in ("python", "ROOST_HOME", "sqlite-vec", "chat model", "embedding model",
                 "temporal"):  # fmt: skip
        assert any(line.startswith("ok") and f"  {name}  " in line for line in lines), name
    assert "tokens/s" in done.stdout and "384-dimension" in done.stdout
    assert "checks passed" in lines[-1]


@pytest.mark.model
@pytest.mark.e2e
def test_doctor_names_a_corrupt_model_file(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 4096)
    added = run_cli(env, "model", "add", "broken", "--engine", "llama-cpp", "--target",
                    str(corrupt))  # fmt: skip
    assert added.returncode == 0, added.stderr
    done = run_cli(env | {"ROOST_INFERENCE__DEFAULT_MODEL": "broken"}, "doctor", timeout=240)
    assert done.returncode == 1, done.stdout + done.stderr
    failures = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1, done.stdout
    assert "chat model" in failures[0] and "'broken'" in failures[0]
    assert str(corrupt) in failures[0]
    assert "1 of" in done.stdout.splitlines()[-1]
