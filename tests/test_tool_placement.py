"""Where tools run (``runs_on`` in ``agent.toml``): in the worker, on the run owner's tools
daemon, or ``anywhere`` (the daemon if it is there). In local mode the daemon's tools run
in-process, under this machine's daemon policy and MCP config, with a real MCP server made
with the ``mcp`` SDK."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_helpers import make_agent, tools_toml
from roost.agents import ManifestError, parse_manifest
from roost.config import Settings
from roost.platform import Platform

MCP_SERVER = Path(__file__).parent / "fakes" / "mcp_server.py"

USES_DAEMON = """
async def run(ctx, input):
    here = await ctx.tool("shell", command="pwd; echo $((6*7))")
    added = await ctx.tool("notes.add", a=2, b=40)
    shouted = await ctx.tool("web.shout", text="hi")
    read = await ctx.tool("read_file", path="notes.txt")
    specs = {s.name: s.parameters.get("required") for s in await ctx.tool_specs()}
    return {
        "shell": here["output"].split(),
        "added": added,
        "shouted": shouted["result"].split(" (")[0],
        "read": read["content"],
        "specs": specs,
    }
"""

READS = """
async def run(ctx, input):
    return await ctx.tool("read_file", path="notes.txt")
"""

TOOLS = (
    tools_toml("shell", "notes.add", "web.shout")
    + """

[[tools]]
name = "read_file"
runs_on = "anywhere"
entry = "tools:read_file"
"""
)

READ_TOOL = """
[[tools]]
name = "read_file"
runs_on = "anywhere"
entry = "tools:read_file"
"""

WORKER_READ = '''
def read_file(path: str) -> str:
    """Read a file (the worker's stand-in when no daemon is connected)."""
    return f"the worker has no {path}"
'''


def _manifest(tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "a", "runtime": "python", "entry": "agent:run", "tools": tools}


def test_placement_in_the_manifest_is_checked() -> None:
    decls = parse_manifest(
        _manifest([{"name": "notes.search", "runs_on": "daemon"}, {"name": "calculator"}])
    ).tools
    assert [(d.name, d.runs_on) for d in decls] == [
        ("notes.search", "daemon"),
        ("calculator", "server"),
    ]
    problems = {
        "runs on the daemon, which has its own tools": [
            {"name": "shell", "runs_on": "daemon", "entry": "t:f"}
        ],
        "only daemon tools": [{"name": "notes.search"}],
        "Input should be 'server', 'daemon' or 'anywhere'": [{"name": "x", "runs_on": "moon"}],
    }
    for problem, tools in problems.items():
        with pytest.raises(ManifestError, match=problem) as caught:
            parse_manifest(_manifest(tools), "agent/agent.toml")
        assert caught.value.path == "agent/agent.toml" and caught.value.field.startswith("tools.0")


def _configure_daemon(config: Path, root: Path, mcp: dict[str, Any]) -> None:
    config.mkdir(parents=True, exist_ok=True)
    (config / "policy.toml").write_text(f'roots = ["{root}"]\n')
    (config / "mcp.json").write_text(json.dumps({"mcpServers": mcp}))


@pytest.fixture
def workdir(tmp_path: Path, _daemon_home: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("read on the daemon\n")
    return work


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_mcp(tmp_path: Path) -> Iterator[str]:
    """The MCP server over Streamable HTTP on a loopback port: its URL."""
    port = _free_port()
    log = (tmp_path / "mcp-http.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(MCP_SERVER), "--http", str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "mcp-http.log").read_text()
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the MCP server did not listen"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _mcp_servers(http_url: str) -> dict[str, Any]:
    """The test MCP server twice: over stdio (``notes``) and Streamable HTTP (``web``)."""
    return {
        "notes": {"command": sys.executable, "args": [str(MCP_SERVER)]},
        "web": {"url": http_url},
    }


async def _deploy(platform: Platform, tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    await platform.deploy(
        make_agent(agents, "handy", USES_DAEMON, f'services = ["tool"]\n{TOOLS}', services=(),
                   tools=WORKER_READ)
    )  # fmt: skip
    await platform.deploy(
        make_agent(agents, "reader", READS, f'services = ["tool"]\n{READ_TOOL}', services=(),
                   tools=WORKER_READ)
    )  # fmt: skip


def _local(tmp_path: Path, **tools: Any) -> Settings:
    return Settings(home=tmp_path / "home", workflows={"engine": "inprocess"}, tools=tools)


async def test_local_mode_runs_daemon_tools_in_process(
    tmp_path: Path, workdir: Path, _daemon_home: Path, http_mcp: str
) -> None:
    _configure_daemon(_daemon_home, workdir, _mcp_servers(http_mcp))
    async with await Platform.open(_local(tmp_path)) as platform:
        await _deploy(platform, tmp_path)
        result = await platform.run("handy", "go", timeout_s=60)
        assert result.output == {
            "shell": [str(workdir), "42"],
            "added": {"result": 42},
            "shouted": "HI",
            "read": "read on the daemon\n",
            # the model is offered every tool, MCP ones under a name model APIs accept,
            # with the daemon's schemas
            "specs": {
                "shell": ["command"],
                "notes__add": ["a", "b"],
                "web__shout": ["text"],
                "read_file": ["path"],
            },
        }, result


async def test_local_mode_keeps_its_machine_to_its_own_runs(
    tmp_path: Path, workdir: Path, _daemon_home: Path
) -> None:
    """A run of a signed-in user of a monolith's API does not get the server's shell: its
    daemon tools are refused, its ``anywhere`` tools run in the worker."""
    _configure_daemon(_daemon_home, workdir, {})
    async with await Platform.open(_local(tmp_path)) as platform:
        await _deploy(platform, tmp_path)
        assert (await platform.run("reader", "", owner="bob")).output == (
            "the worker has no notes.txt"
        )
        refused = await platform.run("handy", "", owner="bob", timeout_s=30)
        assert not refused.ok and refused.complete.error is not None
        assert refused.complete.error.code == "auth"
        assert "not one of [tools] local_owners" in refused.complete.error.message
    async with await Platform.open(_local(tmp_path, local_owners=["bob"])) as platform:
        read = await platform.run("reader", "", owner="bob")
        assert read.output["content"] == "read on the daemon\n"
    async with await Platform.open(_local(tmp_path, daemon="off")) as platform:
        assert (await platform.run("reader", "")).output == "the worker has no notes.txt"
        off = await platform.run("handy", "", timeout_s=30)
        assert off.complete.error is not None and off.complete.error.code == "invalid_config"
        assert 'daemon = "off"' in off.complete.error.message
