"""``roost daemon register|start|status|stop|logs``: the tools daemon on the user's machine
(docs/daemon.md). The daemon itself is ``python -m roost.toolsd``; these verbs set it up,
launch it in the background and look after it through its PID, status and log files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import typer

from roost.cli._common import err_console, fail, run_async

if TYPE_CHECKING:
    from roost.toolsd import Credentials, DaemonPaths

app = typer.Typer(help="The tools daemon: agents' shell, file and MCP tools on this machine.")

START_WAIT_S = 15.0
STOP_WAIT_S = 10.0


def _paths() -> DaemonPaths:
    from roost.toolsd import DaemonPaths

    return DaemonPaths.default()


def _say(line: str) -> None:
    err_console.print(line, highlight=False, markup=False, soft_wrap=True)


async def _register(gateway: str, name: str | None) -> Credentials:
    """A daemon-scoped token made through the logged-in CLI's API, saved as the daemon's
    credentials."""
    from roost.cli.auth import _client_settings, _with_api
    from roost.toolsd import Credentials, save_credentials

    client = _client_settings()
    label = name or f"roost daemon on {socket.gethostname()}"

    async def work(api: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        me = await api.request("GET", "/me")
        made = await api.request("POST", "/tokens", json={"name": label, "scopes": ["daemon"]})
        return me, made

    me, made = await _with_api(client, work)
    credentials = Credentials(
        token=str(made["token"]),
        user_id=str(me["id"]),
        gateway=gateway,
        api_url=client.api_url,
        token_id=str(made["id"]),
        created_at=time.time(),
    )
    save_credentials(_paths().credentials, credentials)
    return credentials


@app.command("register")
@run_async
async def register(
    gateway: str = typer.Option(
        ..., "--gateway", help="The gateway URL the daemon dials (https://host:9190)."
    ),
    name: str | None = typer.Option(None, "--name", help="The token's name."),
) -> None:
    """Make a daemon-scoped access token (through the API you are logged in to) and save it
    in the daemon's credentials file (mode 0600)."""
    credentials = await _register(gateway, name)
    _say(
        f"registered: token {credentials.token_id} for user {credentials.user_id}, gateway "
        f"{credentials.gateway}; saved in {_paths().credentials}. Next: `roost daemon start`"
    )


def _running() -> int | None:
    from roost.toolsd import read_pid

    return read_pid(_paths())


def _status() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(_paths().status_file.read_text())
        return data
    except (OSError, ValueError):
        return {}


@app.command("start")
def start(
    gateway: str | None = typer.Option(
        None, "--gateway", help="Gateway URL(s), comma-separated [default: the registered one]."
    ),
    tls_mode: str | None = typer.Option(
        None, "--tls-mode", help="tls | insecure_tls_skip_verify | h2c [default: from the URL]."
    ),
    token: str | None = typer.Option(
        None, "--token", envvar="ROOST_DAEMON_TOKEN", help="A daemon token (else the saved one)."
    ),
    user_id: str | None = typer.Option(None, "--user-id", help="The token's user (with --token)."),
    root: str | None = typer.Option(None, "--root", help="The root without a policy file."),
    foreground: bool = typer.Option(
        False, "--foreground", help="Stay attached (logs here, approval prompts answered here)."
    ),
) -> None:
    """Start the daemon in the background. Credentials: the saved file, else a new
    registration if this CLI is logged in, else --token and --user-id."""
    from roost.toolsd import CredentialsError, load_credentials

    paths = _paths()
    other = _running()
    if other is not None:
        fail(f"a roost daemon already runs here (pid {other}); `roost daemon stop` first")
    try:
        saved = load_credentials(paths.credentials)
    except CredentialsError as exc:
        fail(str(exc))
    secret = ""
    urls = gateway or ""
    expected = ""
    if token:
        if not user_id and saved is None:
            fail("--token needs --user-id (the user the token belongs to)")
        secret = token
        expected = user_id or ""
    elif saved is not None:
        secret, expected = saved.token, saved.user_id
        urls = urls or saved.gateway
    elif gateway:
        try:
            secret = asyncio.run(_register(gateway, None)).token
        except typer.Exit:
            fail(
                "no daemon credentials: run `roost daemon register --gateway URL` (after "
                "`roost auth login`), or pass --token and --user-id"
            )
    if not secret or not urls:
        fail(
            "no daemon credentials or gateway: run `roost daemon register --gateway URL` "
            "(after `roost auth login`), or pass --gateway, --token and --user-id"
        )
    args = [sys.executable, "-m", "roost.toolsd"]
    for url in urls.split(","):
        if url.strip():
            args += ["--gateway", url.strip()]
    if tls_mode:
        args += ["--tls-mode", tls_mode]
    if root:
        args += ["--root", root]
    env = {**os.environ, "ROOST_DAEMON_TOKEN": secret, "ROOST_DAEMON_USER": expected}
    if foreground:
        os.execve(sys.executable, [*args, "--foreground"], env)
    paths.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.time()
    with open(os.devnull, "wb") as devnull:
        process = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=devnull, stderr=devnull,
            start_new_session=True,  # it outlives this shell
        )  # fmt: skip
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            fail(f"the daemon exited at once (status {code}): see `roost daemon logs`")
        state = _status()
        if state.get("pid") == process.pid and state.get("at", 0) >= started:
            if state.get("state") == "connected":
                _say(f"daemon started (pid {process.pid}), connected to {state.get('gateway')}")
                return
            if state.get("state") == "stopped":
                fail(f"the daemon stopped: {state.get('reason')}")
        time.sleep(0.2)
    _say(
        f"daemon started (pid {process.pid}) but not connected yet; it keeps trying "
        "(`roost daemon status`, `roost daemon logs`)"
    )


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print it as JSON.")) -> None:
    """Whether the daemon runs, and its connection."""
    pid = _running()
    state = _status() if pid is not None else {}
    if as_json:
        sys.stdout.write(json.dumps({"running": pid is not None, "pid": pid, **state}) + "\n")
        return
    if pid is None:
        _say("not running (start it with `roost daemon start`)")
        raise typer.Exit(3)
    where = f", {state.get('state')}" if state else ""
    if state.get("gateway"):
        where += f" to {state['gateway']}"
    _say(f"running (pid {pid}){where}")


@app.command("stop")
def stop(force: bool = typer.Option(False, "--force", help="SIGKILL instead of SIGTERM.")) -> None:
    """Stop the daemon."""
    from roost._proc import pid_alive

    pid = _running()
    if pid is None:
        _say("not running")
        return
    os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        fail(
            f"the daemon (pid {pid}) did not stop in {STOP_WAIT_S:g}s: `roost daemon stop --force`"
        )
    if force:
        _paths().pid_file.unlink(missing_ok=True)
    _say(f"stopped (pid {pid})")


@app.command("reload")
def reload() -> None:
    """Re-read policy.toml and mcp.json (MCP servers are restarted) without reconnecting."""
    pid = _running()
    if pid is None:
        fail("not running (start it with `roost daemon start`)")
    os.kill(pid, signal.SIGHUP)
    _say(f"asked the daemon (pid {pid}) to reload; `roost daemon logs` shows the result")


@app.command("logs")
def logs(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many of the last lines."),
) -> None:
    """The daemon's log."""
    path = _paths().log_file
    if not path.is_file():
        fail(f"no daemon log yet ({path})")
    with path.open() as handle:
        for line in handle.readlines()[-lines:]:
            sys.stdout.write(line)
        sys.stdout.flush()
        while follow:
            line = handle.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.25)
