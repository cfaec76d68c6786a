"""End-to-end: drive the `roost` command line as a user would, in a fresh ROOST_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fakes import FakeLLMServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


class Roost:
    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, "ROOST_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"}
        self.env.pop("ROOST_CONFIG", None)
        self.env.update(env or {})

    def __call__(
        self, *args: str, ok: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "roost", *args],
            env=self.env,
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if ok and proc.returncode != 0:
            raise AssertionError(
                f"roost {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
            )
        return proc


@pytest.fixture
def roost(tmp_path: Path, temporal_env: dict[str, str]) -> Roost:
    """The CLI, running durably on the session's Temporal."""
    return Roost(tmp_path / "home", temporal_env)


COUNTER = """
async def run(ctx, input):
    count = int(await ctx.kv.get_text("count", "0")) + 1
    await ctx.kv.put("count", str(count))
    return {"count": count}
"""


def test_deploy_run_fork_promote(roost: Roost, tmp_path: Path) -> None:
    agent = tmp_path / "counter"
    agent.mkdir()
    (agent / "agent.toml").write_text('name = "counter"\nruntime = "python"\nentry = "agent:run"\n')
    (agent / "agent.py").write_text(textwrap.dedent(COUNTER))

    assert "deployed counter version 1" in roost("agent", "deploy", str(agent)).stdout
    assert "counter" in roost("agent", "list").stdout
    first = roost("agent", "run", "counter", "-p", "go")
    assert json.loads(first.stdout) == {"count": 1}
    session = first.stderr.split("session ")[1].split()[0]
    assert json.loads(roost("agent", "run", "counter", "-s", session, "-p", "again").stdout) == {
        "count": 2
    }

    listing = roost("session", "list").stdout
    assert session in listing
    shown = roost("session", "get", session).stdout
    for kind in ("invoke", "request", "response", "complete"):
        assert kind in shown
    nodes = json.loads(roost("session", "get", session, "--json").stdout)
    first_complete = next(n for n in nodes if n["kind"] == "complete")

    forked = roost("session", "fork", session, "--from", first_complete["id"][:12], "-b", "alt")
    assert "forked branch alt" in forked.stdout
    on_fork = roost("agent", "run", "counter", "-s", session, "-b", "alt", "-p", "x")
    assert json.loads(on_fork.stdout) == {"count": 2}
    roost("session", "promote", session, "alt")
    assert "main branch: alt" not in roost("session", "get", session).stdout  # sanity of output
    assert json.loads(roost("agent", "run", "counter", "-s", session, "-p", "y").stdout) == {
        "count": 3
    }


def test_errors_are_one_line_and_exit_non_zero(roost: Roost, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "agent.toml").write_text('name = "bad"\nruntime = "chat"\ntemperature = 2\n')
    proc = roost("agent", "deploy", str(bad), ok=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"{bad / 'agent.toml'}: field 'temperature': unknown field" in proc.stderr

    proc = roost("agent", "run", "ghost", "-p", "hi", ok=False)
    assert proc.returncode == 1 and "agent 'ghost' is not deployed" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = roost("session", "get", "no-such-session", ok=False)
    assert proc.returncode == 1 and "no-such-session" in proc.stderr

    roost.env["ROOST_BUS__BACKEND"] = "smoke-signals"
    proc = roost("agent", "list", ok=False)
    assert proc.returncode == 1 and "bus.backend" in proc.stderr


def test_secrets(roost: Roost) -> None:
    roost("secret", "put", "openai-key", "sk-test-123")
    assert roost("secret", "get", "openai-key").stdout.strip() == "sk-test-123"
    assert roost("secret", "exists", "openai-key").returncode == 0
    roost("secret", "put", "piped", stdin="from-stdin\n")
    assert roost("secret", "get", "piped").stdout.strip() == "from-stdin"
    roost("secret", "delete", "openai-key")
    assert roost("secret", "exists", "openai-key", ok=False).returncode == 1
    proc = roost("secret", "get", "openai-key", ok=False)
    assert proc.returncode == 1 and "openai-key" in proc.stderr


def test_models_against_a_remote_engine(roost: Roost, tmp_path: Path) -> None:
    with FakeLLMServer(models=["llama-3-fake", "fake-embed"]) as server:
        proc = roost("model", "available", "--engine", "openai", "--base-url", server.openai_url)
        assert "llama-3-fake" in proc.stdout and "fake-embed" in proc.stdout
        roost("secret", "put", "fake-key", "sk-1")
        added = roost(
            "model",
            "add",
            "cloud",
            "--engine",
            "openai",
            "--target",
            "llama-3-fake",
            "--base-url",
            server.openai_url,
            "--api-key-secret",
            "fake-key",
        )
        assert "added chat model cloud (openai)" in added.stdout
        listed = roost("model", "list").stdout
        assert "cloud" in listed and "smollm2" in listed and "minilm" in listed
        proc = roost(
            "model",
            "add",
            "cloud",
            "--engine",
            "openai",
            "--target",
            "x",
            "--base-url",
            server.openai_url,
            ok=False,
        )
        assert proc.returncode == 1 and "cloud" in proc.stderr

        agent = tmp_path / "cloudy"
        agent.mkdir()
        (agent / "agent.toml").write_text(
            'name = "cloudy"\nruntime = "chat"\n[models]\nchat = "cloud"\n'
        )
        roost("agent", "deploy", str(agent))
        server.reply("Hello from the cloud.")
        assert roost("agent", "run", "cloudy", "-p", "hi").stdout.strip() == "Hello from the cloud."
        assert server.last().headers.get("authorization") == "Bearer sk-1"

        proc = roost("model", "remove", "cloud")
        assert "cloud" not in roost("model", "list").stdout
        proc = roost("agent", "deploy", str(agent), ok=False)
        assert "field 'models.chat'" in proc.stderr and "cloud" in proc.stderr


@pytest.mark.model
def test_readme_flow_on_the_embedded_model(roost: Roost) -> None:
    """What the README's run command does: deploy the example chat agent, run it for real."""
    roost("agent", "deploy", "examples/hello-chat")
    run = roost("agent", "run", "hello-chat", "-p", "Say hello in one short sentence.")
    assert run.stdout.strip(), "the model produced no text"
    assert "tokens" in run.stderr
    session = run.stderr.split("session ")[1].split()[0]
    nodes = json.loads(roost("session", "get", session, "--json").stdout)
    kinds = [n["kind"] for n in nodes]
    assert kinds[0] == "invoke" and kinds[-1] == "complete" and "request" in kinds
    usage = nodes[-1]["content"]["usage"]
    assert usage["completion_tokens"] > 0


ASKER = """
async def run(ctx, input):
    colour = await ctx.ask("Which colour?")
    await ctx.emit(f"got {colour}")
    return f"{input} in {colour}"
"""


@pytest.mark.temporal
def test_a_run_asks_and_resumes_after_run_answer(roost: Roost, tmp_path: Path) -> None:
    agent = tmp_path / "asker"
    agent.mkdir()
    (agent / "agent.toml").write_text('name = "asker"\nruntime = "python"\nentry = "agent:run"\n')
    (agent / "agent.py").write_text(textwrap.dedent(ASKER))
    roost("agent", "deploy", str(agent))

    running = subprocess.Popen(
        [sys.executable, "-m", "roost", "agent", "run", "asker", "-p", "paint it"],
        env=roost.env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = ""
        deadline = time.monotonic() + 60
        while not run_id:
            assert time.monotonic() < deadline, "the run never asked its question"
            listed = roost("run", "list").stdout
            if "waiting for an answer" in listed:
                run_id = next(
                    line.split("│")[1].strip() for line in listed.splitlines() if "waiting" in line
                )
            else:
                time.sleep(0.2)
        shown = roost("run", "get", run_id).stdout
        assert "Which colour?" in shown and f"roost run answer {run_id}" in shown

        assert f"answered {run_id}" in roost("run", "answer", run_id, "blue").stdout
        out, err = running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 0, err
    assert out.strip() == "paint it in blue"
    assert "Which colour?" in err and f"roost run answer {run_id}" in err

    got = json.loads(roost("run", "get", run_id, "--json").stdout)
    assert got["status"] == "completed" and got["output"] == "paint it in blue"
    proc = roost("run", "answer", run_id, "red", ok=False)
    assert proc.returncode == 1 and "not waiting for an answer" in proc.stderr
    proc = roost("run", "get", "no-such-run", ok=False)
    assert proc.returncode == 1 and "no run 'no-such-run'" in proc.stderr


@pytest.mark.temporal
def test_run_cancel(roost: Roost, tmp_path: Path) -> None:
    agent = tmp_path / "slow"
    agent.mkdir()
    (agent / "agent.toml").write_text('name = "slow"\nruntime = "python"\nentry = "agent:run"\n')
    (agent / "agent.py").write_text(
        "import asyncio\nasync def run(ctx, input):\n    await asyncio.sleep(600)\n"
    )
    roost("agent", "deploy", str(agent))
    running = subprocess.Popen(
        [sys.executable, "-m", "roost", "agent", "run", "slow", "-p", "x"],
        env=roost.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "running" not in (listed := roost("run", "list").stdout):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        run_id = next(
            line.split("│")[1].strip() for line in listed.splitlines() if "running" in line
        )
        roost("run", "cancel", run_id)
        _, err = running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 1 and "the run was cancelled" in err
    assert "cancelled" in roost("run", "get", run_id).stdout


@pytest.mark.temporal
def test_embedded_temporal_starts_once_and_stops(tmp_path: Path) -> None:
    """No Temporal address configured: roost starts its own server and reuses it."""
    roost = Roost(tmp_path / "home")
    roost.env.pop("ROOST_WORKFLOWS__TEMPORAL_ADDRESS", None)
    agent = tmp_path / "echo"
    agent.mkdir()
    (agent / "agent.toml").write_text('name = "echo"\nruntime = "python"\nentry = "agent:run"\n')
    (agent / "agent.py").write_text("async def run(ctx, input):\n    return input\n")
    try:
        assert roost("temporal", "status", ok=False).returncode == 1
        roost("agent", "deploy", str(agent))  # commands that need no runs do not start it
        assert roost("temporal", "status", ok=False).returncode == 1
        assert roost("agent", "run", "echo", "-p", "hello").stdout.strip() == "hello"
        status = roost("temporal", "status").stdout
        assert "embedded Temporal at 127.0.0.1:" in status
        assert roost("agent", "run", "echo", "-p", "again").stdout.strip() == "again"
        assert roost("temporal", "status").stdout == status  # the same server, reused
        assert "stopped" in roost("temporal", "stop").stdout
        assert roost("temporal", "status", ok=False).returncode == 1
        # runs survive a restart of the embedded server (its database lives in ROOST_HOME)
        assert "completed" in roost("run", "list").stdout
    finally:
        roost("temporal", "stop", ok=False)


def test_run_with_a_branch_and_no_session_names_the_flags(tmp_path: Path) -> None:
    from cli_helpers import cli_env, run_cli

    done = run_cli(cli_env(tmp_path / "home"), "agent", "run", "anything", "-b", "x", "-p", "hi")
    assert done.returncode == 1
    assert "--branch needs --session" in done.stderr


def test_json_output_for_scripts(roost: Roost, tmp_path: Path) -> None:
    agent = tmp_path / "counter"
    agent.mkdir()
    (agent / "agent.toml").write_text('name = "counter"\nruntime = "python"\nentry = "agent:run"\n')
    (agent / "agent.py").write_text(textwrap.dedent(COUNTER))
    roost("agent", "deploy", str(agent))
    listed = json.loads(roost("agent", "list", "--json").stdout)
    assert [(a["name"], a["version"], a["runtime"]) for a in listed] == [("counter", 1, "python")]
    first = json.loads(roost("agent", "run", "counter", "-p", "go", "--json").stdout)
    assert first["ok"] is True and first["output"] == {"count": 1}
    # a script learns the run's session from stdout and continues it
    again = json.loads(
        roost("agent", "run", "counter", "-s", first["session"], "-p", "x", "--json").stdout
    )
    assert again["output"] == {"count": 2} and again["session_id"] == first["session_id"]
    run = json.loads(roost("run", "get", again["run"], "--json").stdout)
    assert run["status"] == "completed" and run["session"] == first["session_id"]
    refused = roost("agent", "run", "counter", "--json", ok=False)
    assert refused.returncode != 0 and "--json needs an input" in refused.stderr
