"""The daemon process: ``python -m roost.toolsd`` (what ``roost daemon start`` launches).

It writes its PID file, logs to the daemon's log file, loads the policy and MCP servers,
and keeps its gateway connection until SIGTERM/SIGINT or a goodbye that says not to come
back. The token comes from ``ROOST_DAEMON_TOKEN`` or the credentials file, never from the
command line (which every user of the machine can read).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from roost.toolsd._connection import DaemonClient, DaemonStopped, Gateway, TlsMode
from roost.toolsd._host import HostConfig, ToolHost
from roost.toolsd._paths import DaemonPaths, load_credentials, write_private

log = logging.getLogger("roost.toolsd")

EXIT_STOPPED = 0
EXIT_REFUSED = 3  # the gateway said not to come back (replaced, revoked)
EXIT_CONFIG = 2


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(paths: DaemonPaths) -> int | None:
    """The running daemon's pid, or ``None`` (a stale PID file counts as none)."""
    try:
        pid = int(paths.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def _setup_logging(paths: DaemonPaths, foreground: bool, level: str) -> None:
    paths.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    handlers: list[logging.Handler] = [logging.FileHandler(paths.log_file)]
    if foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def _tty_approver() -> Any:
    """Approval prompts at the daemon's terminal, one at a time (foreground only)."""
    if not sys.stdin.isatty():
        return None
    lock = asyncio.Lock()

    async def approve(name: str, arguments: dict[str, Any]) -> bool:
        async with lock:
            question = f"\nroost daemon: allow {name} {json.dumps(arguments)[:500]}? [y/N] "
            answer = await asyncio.to_thread(input, question)
            return answer.strip().lower() in ("y", "yes")

    return approve


async def serve(
    paths: DaemonPaths,
    gateways: list[Gateway],
    token: str,
    *,
    ca_file: str | None = None,
    foreground: bool = False,
    root: Path | None = None,
    user: str = "",
) -> int:
    """Run the daemon until stopped; the exit status."""
    from roost import __version__

    host = ToolHost(
        HostConfig(policy_file=paths.policy, mcp_file=paths.mcp, default_root=root),
        approver=_tty_approver() if foreground else None,
    )
    await host.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            done = await host.reload()
            log.info("configuration reloaded: tools %s", ", ".join(done["tools"]))
        except Exception as exc:  # a bad edit: keep serving with what was loaded
            log.error("configuration not reloaded: %s", exc)

    def on_hangup() -> None:  # `roost daemon reload`: re-read policy.toml and mcp.json
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    with contextlib.suppress(NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, on_hangup)

    def on_state(state: str, info: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            write_private(
                paths.status_file,
                json.dumps({"state": state, "at": time.time(), "pid": os.getpid(), **info}),
            )

    client = DaemonClient(
        host,
        gateways,
        token,
        ca_file=ca_file,
        version=__version__,
        on_state=on_state,
        expected_user=user,
    )
    log.info(
        "roost daemon %s (pid %d): tools %s",
        __version__,
        os.getpid(),
        ", ".join(s["name"] for s in host.specs()),
    )
    code = EXIT_STOPPED
    try:
        await client.run(stop)
    except DaemonStopped as exc:
        log.error("stopping: %s", exc)
        on_state("stopped", {"reason": str(exc)})
        code = EXIT_REFUSED
    finally:
        await host.close()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roost.toolsd", description=__doc__)
    parser.add_argument(
        "--gateway", action="append", default=[], help="gateway URL (repeat for more)"
    )
    parser.add_argument(
        "--tls-mode", choices=["tls", "insecure_tls_skip_verify", "h2c"], default=None
    )
    parser.add_argument("--ca-file", default=None)
    parser.add_argument("--root", default=None, help="the default root without a policy file")
    parser.add_argument("--foreground", action="store_true")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    paths = DaemonPaths.default()
    _setup_logging(paths, args.foreground, args.log_level)
    token = os.environ.pop("ROOST_DAEMON_TOKEN", "")
    user = os.environ.pop("ROOST_DAEMON_USER", "")
    credentials = load_credentials(paths.credentials)
    if not token and credentials is not None:
        token, user = credentials.token, user or credentials.user_id
    urls = args.gateway or ([credentials.gateway] if credentials and credentials.gateway else [])
    if not token or not urls:
        log.error("no daemon credentials or gateway: run `roost daemon register`")
        return EXIT_CONFIG
    tls: TlsMode | None = args.tls_mode
    gateways = [Gateway.parse(u.strip(), tls) for url in urls for u in url.split(",") if u.strip()]
    other = read_pid(paths)
    if other is not None and other != os.getpid():
        log.error("a roost daemon already runs here (pid %d): `roost daemon stop` first", other)
        return EXIT_CONFIG
    write_private(paths.pid_file, f"{os.getpid()}\n")
    try:
        return asyncio.run(
            serve(paths, gateways, token, ca_file=args.ca_file, foreground=args.foreground,
                  root=Path(args.root) if args.root else None, user=user)
        )  # fmt: skip
    finally:
        with contextlib.suppress(OSError):
            if paths.pid_file.read_text().split()[0] == str(os.getpid()):
                paths.pid_file.unlink()
