"""Tiny programs for tests/test_supervisor.py.

``python tests/supervisor_helper.py worker [options]`` is a supervised worker built on
WorkerLink whose misbehaviour the options choose; it appends its life events (start, ready,
stop) as JSON lines to ``--events FILE``. ``python tests/supervisor_helper.py supervise
SPEC.json`` runs a Supervisor from a JSON spec, as a separate process a test can signal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from roost.supervisor import (
    AlreadyRunningError,
    StartupError,
    Supervisor,
    SupervisorConfig,
    WorkerLink,
    WorkerSpec,
)


def record(path: str, event: str, **fields: object) -> None:
    if not path:
        return
    line = {"event": event, "name": os.environ.get("HELPER_NAME", "?"), "pid": os.getpid()}
    line.update(fields, t=time.time())
    with open(path, "a") as handle:  # O_APPEND: small lines from many processes stay whole
        handle.write(json.dumps(line) + "\n")


def first_time(flag: str) -> bool:
    """True the first time any process asks about ``flag`` (a file), False afterwards."""
    if not flag:
        return True
    try:
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


async def worker(args: argparse.Namespace) -> int:
    link = WorkerLink.from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    misbehave = first_time(args.once)
    record(args.events, "start", supervised=link.supervised)
    if args.child:
        child = subprocess.Popen(["sleep", "60"])  # noqa: ASYNC220 - same group as this worker
        record(args.events, "child", child=child.pid)
    if args.later_exit is not None and not misbehave:
        record(args.events, "exit", code=args.later_exit)
        return int(args.later_exit)
    if args.never_ready and misbehave:
        await stop.wait()
        return 0
    await asyncio.sleep(args.ready_after)
    await link.ready(answer=42)
    record(args.events, "ready")
    if misbehave and args.exit_after is not None:
        await asyncio.sleep(args.exit_after)
        record(args.events, "exit", code=args.code)
        return int(args.code)
    if misbehave and args.linger is not None:
        await asyncio.sleep(0.2)
        await link.close()  # says "stopping", then beats no more while it winds down
        record(args.events, "linger")
        await asyncio.sleep(args.linger)
        return 0
    if misbehave and args.hang_after is not None:
        await asyncio.sleep(args.hang_after)
        record(args.events, "hang")
        time.sleep(3600)  # noqa: ASYNC251 - blocks the event loop: no more heartbeats
    await stop.wait()
    record(args.events, "stop")
    await link.close()
    return 0


async def supervise(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    phases = [[WorkerSpec(**w) for w in phase] for phase in spec["phases"]]
    config = spec["config"]
    config["log_dir"] = Path(config["log_dir"])
    config["run_dir"] = Path(config["run_dir"])
    supervisor = Supervisor(phases, SupervisorConfig(**config))
    try:
        await supervisor.run()
    except StartupError as exc:
        print(f"supervise: error: {exc}", file=sys.stderr)
        return 1
    except AlreadyRunningError as exc:
        print(f"supervise: error: {exc}", file=sys.stderr)
        return 3
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--events", default="")
    w.add_argument("--ready-after", type=float, default=0.0)
    w.add_argument("--never-ready", action="store_true")
    w.add_argument("--exit-after", type=float, default=None)
    w.add_argument("--code", type=int, default=1)
    w.add_argument("--hang-after", type=float, default=None)
    w.add_argument("--linger", type=float, default=None, help="stop by itself, slowly")
    w.add_argument("--ignore-term", action="store_true")
    w.add_argument("--child", action="store_true")
    w.add_argument("--once", default="", help="misbehave only in the first process to run")
    w.add_argument("--later-exit", type=int, default=None, help="after the first: exit at once")
    s = sub.add_parser("supervise")
    s.add_argument("spec")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "worker":
        return asyncio.run(worker(args))
    return asyncio.run(supervise(args.spec))


if __name__ == "__main__":
    sys.exit(main())
