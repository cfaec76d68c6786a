"""The tools daemon's own parts: policy, built-in tools, the host's once-only calls, MCP
config, credentials and the protocol frames. No gateway here (tests/test_gateway.py)."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from roost.protocol import ProtocolError
from roost.protocol import daemon as wire
from roost.toolsd import (
    Credentials,
    Gateway,
    HostConfig,
    McpConfigError,
    OpError,
    PolicyDenied,
    PolicyError,
    ToolHost,
    load_credentials,
    load_mcp_config,
    load_policy,
    save_credentials,
)


def _host(tmp_path: Path, policy: str = "") -> ToolHost:
    root = tmp_path / "work"
    root.mkdir(exist_ok=True)
    policy_file = tmp_path / "policy.toml"
    if policy:
        policy_file.write_text(policy.replace("ROOT", str(root)))
    return ToolHost(HostConfig(policy_file, tmp_path / "mcp.json", default_root=root))


def test_policy_denies_commands_in_every_part_of_a_line(tmp_path: Path) -> None:
    policy = load_policy(tmp_path / "none.toml", default_root=tmp_path)
    policy.check_command("ls -la | wc -l")
    for line in ("sudo ls", "ls; sudo rm -rf /", "echo $(sudo id)", "FOO=1 sudo x", "env sudo x"):
        with pytest.raises(PolicyDenied, match="sudo"):
            policy.check_command(line)


def test_policy_keeps_paths_inside_roots(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    policy = load_policy(tmp_path / "none.toml", default_root=tmp_path / "root")
    assert policy.resolve_path("a/b.txt") == (tmp_path / "root" / "a" / "b.txt").resolve()
    for escape in ("../outside/x", str(tmp_path / "outside"), "link/x", "/etc/passwd"):
        with pytest.raises(PolicyDenied, match="outside the daemon's roots"):
            policy.resolve_path(escape)


def test_a_bad_policy_file_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("deny_tool = ['shell']\n")
    with pytest.raises(PolicyError, match=r"policy.toml: unknown key 'deny_tool'"):
        load_policy(path)
    path.write_text("deny_tools = 'shell'\n")
    with pytest.raises(PolicyError, match="'deny_tools' must be a list of strings"):
        load_policy(path)


async def test_shell_runs_caps_output_and_times_out(tmp_path: Path) -> None:
    host = _host(tmp_path)
    done = await host.handle(
        "c1", "tool.call", {"name": "shell", "arguments": {"command": "echo hi; pwd"}}, 10
    )
    assert done["is_error"] is False
    assert done["output"]["exit_code"] == 0
    assert done["output"]["output"].split() == ["hi", str((tmp_path / "work").resolve())]
    big = await host.handle(
        "c2", "tool.call",
        {"name": "shell", "arguments": {"command": "yes | head -c 100000", "max_output": 1000}}, 10,
    )  # fmt: skip
    assert len(big["output"]["output"]) == 1000 and big["output"]["truncated"]
    slow = await host.handle(
        "c3",
        "tool.call",
        {"name": "shell", "arguments": {"command": "sleep 30", "timeout_s": 0.5}},
        10,
    )
    assert slow["output"]["timed_out"] is True
    await host.close()


async def test_a_repeated_call_id_runs_once(tmp_path: Path) -> None:
    host = _host(tmp_path)
    counter = tmp_path / "work" / "count"
    call = {"name": "shell", "arguments": {"command": f"echo x >> {counter}; sleep 0.3"}}
    first, second = await asyncio.gather(
        host.handle("same", "tool.call", call, 10), host.handle("same", "tool.call", call, 10)
    )
    third = await host.handle("same", "tool.call", call, 10)
    assert first == second == third
    assert counter.read_text() == "x\n"
    await host.handle("other", "tool.call", call, 10)
    assert counter.read_text() == "x\nx\n"
    await host.close()


async def test_cancel_kills_the_running_command(tmp_path: Path) -> None:
    host = _host(tmp_path)
    call = host.handle(
        "long", "tool.call", {"name": "shell", "arguments": {"command": "sleep 30"}}, 60
    )
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0.3)
    assert (await host.handle("x", "tool.cancel", {"id": "long"}, 5))["cancelled"] is True
    result = await asyncio.wait_for(task, 5)
    assert result == {"output": "the call was cancelled", "is_error": True}
    await host.close()


async def test_the_policy_refuses_whatever_the_caller_asks(tmp_path: Path) -> None:
    host = _host(
        tmp_path,
        'roots = ["ROOT"]\ndeny_tools = ["write_file"]\ndeny_commands = ["curl"]\napprove = ["list_files"]\n',
    )
    names = [s["name"] for s in host.specs()]
    assert "write_file" not in names and "shell" in names
    for body in (
        {"name": "write_file", "arguments": {"path": "x", "content": "y"}},
        {"name": "shell", "arguments": {"command": "curl http://example.com"}},
        {"name": "read_file", "arguments": {"path": "/etc/passwd"}},
        {"name": "list_files", "arguments": {}},  # needs approval; nobody to ask
    ):
        result = await host.handle(str(body), "tool.call", body, 10)
        assert result["is_error"] and result.get("denied"), (body, result)
        assert "refused by the daemon's policy" in result["output"]
    await host.close()


async def test_file_tools_round_trip(tmp_path: Path) -> None:
    host = _host(tmp_path)

    async def tool(name: str, **arguments: object) -> object:
        result = await host.handle(
            f"{name}{arguments}", "tool.call", {"name": name, "arguments": arguments}, 10
        )
        assert result["is_error"] is False, result
        return result["output"]

    await tool("write_file", path="src/a.py", content="def f():\n    return 42\n")
    read = await tool("read_file", path="src/a.py")
    assert read["content"].endswith("return 42\n") and read["encoding"] == "utf-8"  # type: ignore[index]
    listing = await tool("list_files", path=".", recursive=True)
    assert [e["path"] for e in listing["entries"]] == ["src", "src/a.py"]  # type: ignore[index]
    found = await tool("search_files", pattern=r"return \d+")
    assert found["matches"] == ["src/a.py:2:     return 42"]  # type: ignore[index]
    started = await tool("process_start", command="echo one; echo two")
    await asyncio.sleep(0.3)
    logs = await tool("process_logs", id=started["id"])  # type: ignore[index]
    assert logs["lines"] == ["one", "two"] and logs["running"] is False  # type: ignore[index]
    bad = await host.handle("b", "tool.call", {"name": "read_file", "arguments": {}}, 10)
    assert bad["is_error"] and "missing argument 'path'" in bad["output"]
    with pytest.raises(OpError, match="no operation"):
        await host.handle("u", "nope", {}, 5)
    await host.close()


def test_mcp_config_errors_name_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    assert load_mcp_config(path) == []
    path.write_text('{"mcpServers": {"a": {"command": "x", "url": "http://y"}}}')
    with pytest.raises(McpConfigError, match=r"mcpServers.a: give either 'command'"):
        load_mcp_config(path)
    path.write_text('{"mcpServers": {"a.b": {"command": "x"}}}')
    with pytest.raises(McpConfigError, match="a server name"):
        load_mcp_config(path)
    path.write_text(
        '{"mcpServers": {"s": {"command": "x", "args": ["-v"]}, "h": {"url": "http://h/mcp"}}}'
    )
    servers = load_mcp_config(path)
    assert [(s.name, s.command, s.args, s.url) for s in servers] == [
        ("s", "x", ("-v",), ""), ("h", "", (), "http://h/mcp"),
    ]  # fmt: skip


def test_credentials_are_private(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "roost-daemon.json"
    save_credentials(path, Credentials(token="roost_pat_x", user_id="u_1", gateway="http://g:9190"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_credentials(path)
    assert loaded is not None and loaded.token == "roost_pat_x" and loaded.user_id == "u_1"


def test_gateway_urls_imply_tls() -> None:
    assert Gateway.parse("https://gw.example.com") == Gateway("gw.example.com:443", "tls")
    assert Gateway.parse("http://127.0.0.1:9190") == Gateway("127.0.0.1:9190", "h2c")
    assert (
        Gateway.parse("https://g:1", "insecure_tls_skip_verify").tls == "insecure_tls_skip_verify"
    )
    with pytest.raises(ValueError, match="not a gateway address"):
        Gateway.parse("ftp://x")


def test_frames_round_trip_and_reject_garbage() -> None:
    frames: list[wire.GatewayFrame] = [
        wire.Call(id="1", op="tool.call", body={"name": "shell"}),
        wire.Goodbye(kind="replaced", reason="another daemon", reconnect=False),
        wire.TerminalInput(terminal="t1", data=b"\x03ls\n"),
    ]
    for frame in frames:
        assert wire.decode_gateway_frame(wire.encode_frame(frame)) == frame
    with pytest.raises(ProtocolError, match="invalid gateway frame"):
        wire.decode_gateway_frame(b'{"frame": "nope"}')
    with pytest.raises(ProtocolError):
        wire.decode_daemon_frame(b"not json")


def test_user_subjects_cannot_be_wildcards() -> None:
    from roost.protocol import subjects

    assert subjects.tools_sync("u_1") == "roost.v1.tools.request.sync.u_1"
    assert subjects.user_of(subjects.tools_request("u_1")) == "u_1"
    for bad in ("", "*", ">", "a.b", "a b"):
        with pytest.raises(ValueError):
            subjects.tools_sync(bad)
