"""Agents' own dependencies: declared the ecosystem's way, installed per version into
environments cached by bundle digest, used by every runtime. Real pip, npm, node and agent
processes; the model is the fake OpenAI-wire server, the Python packages are wheels built
here (so pip never needs the public index)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import write_agent
from cli_helpers import cli_env, run_cli
from fakes import FakeLLMServer
from roost.agents import (
    DependencyError,
    InstallOptions,
    ManifestError,
    find_dependencies,
    load_manifest,
    pack_folder,
    prepare_environment,
)
from roost.agents._deps import INSTALL_LOG, READY, read_marker
from roost.config import ClientSettings, Settings
from roost.platform import Platform, RemotePlatform, coordination_servicers
from roost.protocol import InvalidRequestError
from roost.rpc import RpcServer

pytestmark = pytest.mark.processes  # agent servers, installers, engine hosts

ROOT = Path(__file__).resolve().parent.parent
NODE_EXAMPLE = ROOT / "examples" / "node-agent"
PY_TAG = f"python{sys.version_info.major}.{sys.version_info.minor}"
HAVE_NODE = shutil.which("node") is not None and shutil.which("npm") is not None
needs_node = pytest.mark.skipif(not HAVE_NODE, reason="needs Node.js: `node` and `npm` on PATH")


# --- a package roost does not ship, as a wheel built here ---------------------------------


def write_wheel(folder: Path, name: str, version: str, code: str) -> Path:
    """A minimal pure-Python wheel of package ``name`` (written by hand: no build tools)."""
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": code.encode(),
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: roost-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    write_wheel(folder, "roost_tinydep", "1.0", "VALUE = 42\n")
    return folder


def offline_pip(wheels: Path) -> dict[str, Any]:
    """``[agents]`` settings that install only from ``wheels`` (never the public index)."""
    return {"pip_args": ["--no-index", "--find-links", str(wheels)], "install_timeout_s": 120}


@pytest.fixture
async def platform(tmp_path: Path, wheels: Path) -> AsyncIterator[Platform]:
    settings = Settings(
        home=tmp_path / "home", workflows={"engine": "inprocess"}, agents=offline_pip(wheels)
    )
    async with await Platform.open(settings) as p:
        yield p


# A stdlib HTTP process agent that reports what its interpreter can import.
PROCESS_AGENT = {
    "agent.toml": 'name = "py-proc"\nruntime = "process"\nentry = "python agent.py"\n',
    "requirements.txt": "# the agent's own packages\nroost-tinydep==1.0\n",
    "agent.py": """
        import importlib.util, json, os, sys
        from http.server import BaseHTTPRequestHandler, HTTPServer

        import roost_tinydep

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                self.reply({"ok": True})
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.reply({"output": {
                    "value": roost_tinydep.VALUE,
                    "prefix": sys.prefix,
                    "virtual_env": os.environ.get("VIRTUAL_ENV"),
                    "sees_roost": importlib.util.find_spec("roost") is not None,
                }})
            def reply(self, payload):
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            def log_message(self, *args):
                pass

        HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
    """,
}

PYTHON_AGENT = {
    "agent.toml": 'name = "py-inproc"\nruntime = "python"\nentry = "agent:run"\n',
    "pyproject.toml": """
        [project]
        name = "py-inproc"
        version = "0.1.0"
        dependencies = ["roost-tinydep"]
    """,
    "agent.py": """
        import roost_tinydep

        async def run(ctx, input):
            return {"value": roost_tinydep.VALUE, "file": roost_tinydep.__file__}
    """,
}


def env_of(platform: Platform, folder: Path, kind: str = PY_TAG) -> Path:
    """Where the environment of ``folder``'s files is cached on ``platform``."""
    digest = hashlib.sha256(pack_folder(folder)).hexdigest()
    return platform.settings.envs_dir / digest / kind


# --- declarations ----------------------------------------------------------------------------


def test_declarations_and_their_mistakes(tmp_path: Path) -> None:
    plain = write_agent(tmp_path / "plain", {"package.json": '{"type": "module"}'})
    assert not find_dependencies(plain)  # no dependencies: nothing to install

    tools_only = write_agent(
        tmp_path / "tools", {"pyproject.toml": "[tool.ruff]\nline-length = 1\n"}
    )
    assert not find_dependencies(tools_only)

    deps = find_dependencies(NODE_EXAMPLE)
    assert deps.python is None and deps.node is not None
    assert deps.node.packages == ("openai",) and deps.node.lock == "package-lock.json"
    lock = json.loads((NODE_EXAMPLE / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/openai"]["version"] == "6.49.0"  # pinned and locked

    unlocked = write_agent(
        tmp_path / "unlocked", {"package.json": '{"dependencies": {"openai": "6.49.0"}}'}
    )
    with pytest.raises(DependencyError) as info:
        find_dependencies(unlocked)
    message = str(info.value)
    assert message.startswith(f"{unlocked / 'package.json'}: ")
    assert "no package-lock.json" in message and "run `npm install`" in message
    assert "openai" in message and "\n" not in message

    dynamic = write_agent(
        tmp_path / "dynamic",
        {"pyproject.toml": '[project]\nname = "x"\nversion = "1"\ndynamic = ["dependencies"]\n'},
    )
    with pytest.raises(DependencyError, match=r"pyproject.toml: field 'project.dynamic'"):
        find_dependencies(dynamic)

    broken = write_agent(tmp_path / "broken", {"package.json": "{not json"})
    with pytest.raises(DependencyError, match=r"package.json: not valid JSON"):
        find_dependencies(broken)

    assert load_manifest(NODE_EXAMPLE).command == ["node", "agent.mjs"]


async def test_a_missing_lock_file_is_a_deploy_error(platform: Platform, tmp_path: Path) -> None:
    folder = write_agent(
        tmp_path / "nolock",
        {
            "agent.toml": 'name = "nolock"\nruntime = "process"\nentry = "node agent.mjs"\n',
            "agent.mjs": "",
            "package.json": '{"type": "module", "dependencies": {"openai": "6.49.0"}}',
        },
    )
    with pytest.raises(ManifestError, match=r"package.json: .*run `npm install`"):
        await platform.deploy(folder)
    assert await platform.list_agents() == []


# --- Node.js ---------------------------------------------------------------------------------


@needs_node
async def test_node_agent_with_the_openai_package(tmp_path: Path) -> None:
    """The example: npm ci of `openai` at deploy, then a chat completion, a streamed one and
    a session KV counter through roost's provider, twice in one session."""
    with FakeLLMServer() as server:
        settings = Settings(
            home=tmp_path / "home",
            workflows={"engine": "inprocess"},
            inference={"default_model": "fake"},
        )
        async with await Platform.open(settings) as platform:
            await platform.add_model(
                name="fake", engine="openai", target="fake-chat", base_url=server.openai_url
            )
            output: list[str] = []
            record = await platform.deploy(NODE_EXAMPLE, on_output=output.append)
            assert any(line.startswith("added 1 package") for line in output), output
            modules = Path(record.path) / "node_modules"
            assert modules.is_symlink() and (modules / "openai" / "package.json").is_file()
            assert modules.resolve().parent.parent.parent == settings.envs_dir
            assert not (NODE_EXAMPLE / "node_modules").exists()  # the source stays clean

            server.reply("Bonjour!")
            server.reply("Salut, en morceaux.")
            first = await platform.run("node-agent", "Say hello in French")
            assert first.ok, first.complete.error
            assert first.output["answer"] == "Bonjour!"
            assert first.output["streamed"] == "Salut, en morceaux."
            assert first.output["chunks"] > 1  # it really streamed
            assert first.output["count"] == 1

            second = await platform.run("node-agent", "again", session=first.session.name)
            assert second.ok, second.complete.error
            assert second.output["answer"] == "echo: again"
            assert second.output["streamed"] == "echo: again"
            assert second.output["count"] == 2

            chats = [r for r in server.requests if r.path == "/v1/chat/completions"]
            assert [bool(r.body.get("stream")) for r in chats] == [False, True, False, True]
            nodes = await platform.session_nodes(first.session.name)
            services = [n.content.get("service") for n in nodes if n.kind == "request"]
            assert services.count("infer") == 4 and services.count("kv") == 4


@needs_node
async def test_a_package_npm_cannot_find_names_it(platform: Platform, tmp_path: Path) -> None:
    missing = "roost-no-such-package-4f1d9c"
    folder = write_agent(
        tmp_path / "ghost",
        {
            "agent.toml": 'name = "ghost"\nruntime = "process"\nentry = "node agent.mjs"\n',
            "agent.mjs": "",
            "package.json": json.dumps({"dependencies": {missing: "1.0.0"}}),
            "package-lock.json": json.dumps(
                {
                    "name": "ghost",
                    "lockfileVersion": 3,
                    "requires": True,
                    "packages": {
                        "": {"dependencies": {missing: "1.0.0"}},
                        f"node_modules/{missing}": {"version": "1.0.0"},
                    },
                }
            ),
        },
    )
    with pytest.raises(DependencyError) as info:
        await platform.deploy(folder)
    assert info.value.package == missing
    message = str(info.value)
    assert message.startswith(f"{folder / 'package.json'}: package {missing!r} cannot be installed")
    assert "\n" not in message
    # no half-made environment: only the lock and the failed install's log are left
    digest = hashlib.sha256(pack_folder(folder)).hexdigest()
    left = sorted(p.name for p in (platform.settings.envs_dir / digest).iterdir())
    assert len(left) == 2 and left[0].endswith(".failed.log") and left[1].endswith(".lock")
    assert await platform.list_agents() == []


# --- Python ----------------------------------------------------------------------------------


async def test_process_agent_runs_on_its_own_venv(platform: Platform, tmp_path: Path) -> None:
    folder = write_agent(tmp_path / "py-proc", PROCESS_AGENT)
    output: list[str] = []
    record = await platform.deploy(folder, on_output=output.append)
    assert any("Successfully installed roost-tinydep-1.0" in line for line in output), output
    env = env_of(platform, folder)
    assert (Path(record.path) / ".venv").resolve() == env

    result = await platform.run("py-proc", "hi")
    assert result.ok, result.complete.error
    assert result.output["value"] == 42
    assert Path(result.output["prefix"]) == env  # `python` is the agent's venv interpreter
    assert result.output["virtual_env"] == str(env)
    assert result.output["sees_roost"] is False  # isolated: roost's packages are not there


async def test_python_runtime_agent_imports_its_requirements(
    platform: Platform, tmp_path: Path
) -> None:
    folder = write_agent(tmp_path / "py-inproc", PYTHON_AGENT)
    await platform.deploy(folder)
    result = await platform.run("py-inproc", "hi")
    assert result.ok, result.complete.error
    assert result.output["value"] == 42
    env = env_of(platform, folder)
    assert Path(result.output["file"]).is_relative_to(env)
    # the agent's packages come after roost's own on the shared sys.path
    position = sys.path.index(str(env / "lib" / PY_TAG / "site-packages"))
    assert position > sys.path.index(sysconfig.get_paths()["purelib"])


async def test_a_failed_install_keeps_the_previous_version_serving(
    platform: Platform, tmp_path: Path
) -> None:
    folder = write_agent(tmp_path / "py-proc", PROCESS_AGENT)
    await platform.deploy(folder)
    assert (await platform.run("py-proc", "v1")).output["value"] == 42

    (folder / "requirements.txt").write_text(
        "roost-tinydep==1.0\nroost-no-such-package-4f1d9c>=2\n"
    )
    with pytest.raises(DependencyError) as info:
        await platform.deploy(folder)
    message = str(info.value)
    assert message.startswith(
        f"{folder / 'requirements.txt'}: package 'roost-no-such-package-4f1d9c' cannot be installed: "
        "No matching distribution found for roost-no-such-package-4f1d9c>=2"
    ), message
    assert info.value.package == "roost-no-such-package-4f1d9c" and "\n" not in message

    # the new version never became current, and left no environment or files behind
    assert (await platform.get_agent("py-proc")).version == 1
    assert not (platform.settings.home / "agents" / "py-proc" / "v2").exists()
    env = env_of(platform, folder)
    assert not env.exists() and env.with_name(env.name + ".failed.log").is_file()
    result = await platform.run("py-proc", "still v1")
    assert result.ok and result.complete.version == 1 and result.output["value"] == 42


def node_settings(tmp_path: Path, home: str, agents: dict[str, Any]) -> Settings:
    """Settings of one node ``home`` of a deployment whose nodes share one database."""
    return Settings(
        home=tmp_path / home,
        state={"url": f"sqlite:///{tmp_path / 'shared.db'}"},
        workflows={"engine": "inprocess"},
        agents=agents,
    )


async def test_environments_are_cached_by_bundle_digest(tmp_path: Path, wheels: Path) -> None:
    """A redeploy of the same files, a restart, and another home sharing the envs folder
    all find the environment built once (its marker and install log are untouched)."""
    folder = write_agent(tmp_path / "py-proc", PROCESS_AGENT)
    envs = tmp_path / "envs"

    def settings(home: str) -> Settings:
        return node_settings(tmp_path, home, {**offline_pip(wheels), "envs_dir": str(envs)})

    async with await Platform.open(settings("node-a")) as a:
        first: list[str] = []
        await a.deploy(folder, on_output=first.append)
        env = env_of(a, folder)
        marker = read_marker(env)
        assert marker is not None and marker["kind"] == "python"
        log_stat = (env / INSTALL_LOG).stat()
        assert any("Successfully installed" in line for line in first)

        again: list[str] = []
        v2 = await a.deploy(folder, on_output=again.append)  # the same files: a new version
        assert v2.version == 2
        assert not any(line.startswith("$ ") for line in again), again  # no command ran
        assert any("using the environment cached for this bundle" in line for line in again)
        assert (await a.run("py-proc", "x")).output["value"] == 42

    async with await Platform.open(settings("node-a")) as restarted:
        assert (await restarted.run("py-proc", "after restart")).output["value"] == 42
    async with await Platform.open(settings("node-b")) as b:  # unpacks v2 from the registry
        result = await b.run("py-proc", "elsewhere")
        assert result.ok and result.output["prefix"] == str(env)
        assert (tmp_path / "node-b" / "agents" / "py-proc" / "v2" / ".venv").resolve() == env

    assert read_marker(env) == marker
    assert (env / INSTALL_LOG).stat().st_mtime_ns == log_stat.st_mtime_ns
    assert (env / INSTALL_LOG).stat().st_ino == log_stat.st_ino
    assert (env / INSTALL_LOG).read_text().count("Successfully installed") == 1  # once, ever


async def test_another_node_installs_when_it_unpacks_the_version(
    tmp_path: Path, wheels: Path
) -> None:
    folder = write_agent(tmp_path / "py-proc", PROCESS_AGENT)

    def settings(home: str) -> Settings:
        return node_settings(tmp_path, home, offline_pip(wheels))

    async with await Platform.open(settings("node-a")) as a:
        await a.deploy(folder)
    async with await Platform.open(settings("node-b")) as b:
        result = await b.run("py-proc", "hi")
        assert result.ok, result.complete.error
        assert result.output["value"] == 42
        assert Path(result.output["prefix"]).is_relative_to(tmp_path / "node-b" / "envs")


async def test_concurrent_installs_of_one_digest_build_once(tmp_path: Path, wheels: Path) -> None:
    source = write_agent(tmp_path / "src", PROCESS_AGENT)
    digest = hashlib.sha256(pack_folder(source)).hexdigest()
    copies = []
    for i in range(3):
        copy = tmp_path / f"v{i}"
        shutil.copytree(source, copy)
        copies.append(copy)
    options = InstallOptions(
        root=tmp_path / "envs", timeout_s=120, pip_args=("--no-index", "--find-links", str(wheels))
    )
    results = await asyncio.gather(*(prepare_environment(c, digest, options) for c in copies))
    envs = [envs[0] for envs in results]
    assert sorted(e.cached for e in envs) == [False, True, True]
    assert len({e.path for e in envs}) == 1
    for copy in copies:
        assert (copy / ".venv").resolve() == envs[0].path
    assert (envs[0].path / READY).is_file()
    assert (envs[0].path / INSTALL_LOG).read_text().count("Successfully installed") == 1


@pytest.fixture
def silent_index() -> Iterator[str]:
    """A package index that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/simple"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


async def test_an_install_that_hangs_times_out_and_cleans_up(
    tmp_path: Path, silent_index: str
) -> None:
    folder = write_agent(tmp_path / "py-proc", PROCESS_AGENT)
    settings = Settings(
        home=tmp_path / "home",
        workflows={"engine": "inprocess"},
        agents={
            "install_timeout_s": 3,
            "pip_args": ["--index-url", silent_index, "--timeout", "60"],
        },
    )
    async with await Platform.open(settings) as platform:
        with pytest.raises(DependencyError, match=r"agents.install_timeout_s = 3s") as info:
            await platform.deploy(folder)
        assert str(info.value).startswith(str(folder / "requirements.txt"))
        env = env_of(platform, folder)
        assert not env.exists()
        assert await platform.list_agents() == []


# --- the CLI and the harness service ---------------------------------------------------------


@pytest.mark.e2e
def test_cli_deploy_shows_the_install_output(tmp_path: Path, wheels: Path) -> None:
    folder = write_agent(tmp_path / "py-proc", PROCESS_AGENT)
    env = cli_env(
        tmp_path / "home",
        ROOST_AGENTS__PIP_ARGS=json.dumps(["--no-index", "--find-links", str(wheels)]),
        ROOST_WORKFLOWS__ENGINE="inprocess",
    )
    proc = run_cli(env, "agent", "deploy", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert "deployed py-proc version 1" in proc.stdout
    assert "Successfully installed roost-tinydep-1.0" in proc.stderr
    assert " -m pip " in proc.stderr and " install " in proc.stderr  # the command, shown

    (folder / "requirements.txt").write_text("roost-no-such-package-4f1d9c\n")
    proc = run_cli(env, "agent", "deploy", str(folder))
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {folder / 'requirements.txt'}: package ")
    assert "'roost-no-such-package-4f1d9c'" in error and "Traceback" not in proc.stderr


async def test_remote_deploy_returns_the_install_output(tmp_path: Path, wheels: Path) -> None:
    roles = ["registry", "state", "secret", "catalog", "harness"]
    settings = Settings(
        home=tmp_path / "server", workflows={"engine": "inprocess"}, agents=offline_pip(wheels)
    )
    folder = write_agent(tmp_path / "client" / "py-proc", PROCESS_AGENT)
    async with (
        await Platform.open(settings) as platform,
        RpcServer(coordination_servicers(platform, roles, node="n1")) as server,
    ):
        address = f"127.0.0.1:{server.port}"
        client = ClientSettings(**{role: address for role in roles}, timeout_s=5)
        async with RemotePlatform(client) as remote:
            output: list[str] = []
            record = await remote.deploy(folder, on_output=output.append)
            assert record.version == 1
            assert any("Successfully installed roost-tinydep-1.0" in line for line in output)
            assert (await remote.run("py-proc", "hi")).output["value"] == 42

            (folder / "requirements.txt").write_text("roost-no-such-package-4f1d9c\n")
            with pytest.raises(InvalidRequestError) as info:
                await remote.deploy(folder)
            message = info.value.message
            assert message.startswith(f"{folder / 'requirements.txt'}: package ")
            assert "'roost-no-such-package-4f1d9c'" in message
            assert (await platform.get_agent("py-proc")).version == 1


def test_venvs_use_the_interpreter_roost_runs_under(tmp_path: Path, wheels: Path) -> None:
    """The agent venv is made by this interpreter (same version), with no pip of its own
    when roost's pip can install into it."""

    async def build() -> Path:
        folder = write_agent(tmp_path / "a", PROCESS_AGENT)
        options = InstallOptions(
            root=tmp_path / "envs", pip_args=("--no-index", "--find-links", str(wheels))
        )
        [env] = await prepare_environment(folder, "ab" * 32, options)
        return env.path

    venv = asyncio.run(build())
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys, roost_tinydep; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert probe.stdout.strip() == sys.version
