"""Session DAG appends: roost's state store against the same statements on the raw driver.

Every durable run records each protocol message it sends or receives as a DAG node before
acting on it, so an append is the hottest write roost makes. This measures
``SqlStateStore.append_node`` (validation, content hashing, the group commit, SQLAlchemy
Core) against a raw-driver baseline doing the *same* SQL work per node: one select of the
branch head, an insert, the head's compare-and-swap update, in its own ``BEGIN IMMEDIATE``
transaction, on a thread pool of the same size, on the same kind of SQLite file (WAL,
``synchronous=NORMAL``).

Two loads, interleaved in ``--rounds`` rounds: one appender (sequential), and
``--concurrency`` appenders on as many sessions (concurrent runs). Printed: wall time and
process CPU per append for each path, and the roost / raw ratios.

    python benchmarks/dag_appends.py --appends 2000 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pysqlite3.dbapi2 as sqlite3
from _machine import cpu_model

from roost.protocol import new_id
from roost.stores import Database, SqlStateStore


def content(i: int) -> dict[str, Any]:
    """A node's content the size of a small recorded request."""
    return {"id": new_id(), "service": "tool", "op": "call", "body": {"i": i, "text": "x" * 200}}


class RawAppender:
    """The baseline: the same select, insert and CAS update on the raw driver, a transaction
    per append, on a thread pool (the event loop must not block on the database)."""

    def __init__(self, path: Path, workers: int) -> None:
        self.path = path
        self.pool = ThreadPoolExecutor(workers)
        self.local = threading.local()

    def _connection(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA busy_timeout = 30000")
            self.local.conn = conn
        return conn

    def _append(self, session: str, data: dict[str, Any]) -> None:
        conn = self._connection()
        encoded = msgspec.json.encode(data, order="sorted")
        conn.execute("BEGIN IMMEDIATE")
        try:
            (head,) = conn.execute(
                "SELECT head FROM branches WHERE session_id = ? AND name = 'main'", (session,)
            ).fetchone()
            nid = hashlib.sha256(
                msgspec.json.encode([session, head, "request", data], order="sorted")
            ).hexdigest()
            conn.execute(
                "INSERT INTO nodes (id, session_id, branch, parent, kind, content, created_at,"
                " message_id) VALUES (?, ?, 'main', ?, 'request', ?, ?, ?)",
                (nid, session, head, encoded.decode(), time.time(), data["id"]),
            )
            conn.execute(
                "UPDATE branches SET head = ? WHERE session_id = ? AND name = 'main' AND head IS ?",
                (nid, session, head),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def append(self, session: str, i: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pool, functools.partial(self._append, session, content(i)))


@dataclass
class Measured:
    name: str
    append: Callable[[str, int], Awaitable[None]]
    sessions: list[str]
    wall_ns: dict[str, int] = field(default_factory=lambda: {"seq": 0, "conc": 0})
    cpu_s: dict[str, float] = field(default_factory=lambda: {"seq": 0.0, "conc": 0.0})
    count: dict[str, int] = field(default_factory=lambda: {"seq": 0, "conc": 0})


async def measure(path: Measured, load: str, appenders: int, per_appender: int) -> None:
    async def appender(session: str) -> None:
        for i in range(per_appender):
            await path.append(session, i)

    cpu0, t0 = time.process_time(), time.perf_counter_ns()
    await asyncio.gather(*(appender(s) for s in path.sessions[:appenders]))
    path.wall_ns[load] += time.perf_counter_ns() - t0
    path.cpu_s[load] += time.process_time() - cpu0
    path.count[load] += appenders * per_appender


async def main(args: argparse.Namespace) -> int:
    print(
        f"session DAG appends, roost vs raw driver: appends={args.appends} "
        f"concurrency={args.concurrency} rounds={args.rounds}"
    )
    print(
        f"machine: nproc={os.cpu_count()} cpu={cpu_model()!r} arch={platform.machine()} "
        f"python={platform.python_version()} sqlite={sqlite3.sqlite_version}"
    )
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="roost-bench-")))
        paths: list[Measured] = []
        for name in ("roost state store", "raw driver, same SQL"):
            db = Database(f"sqlite:///{tmp / name.split()[0]}.db")
            db.migrate()
            stack.push_async_callback(db.close)
            store = SqlStateStore(db)
            sessions = [(await store.create_session("bench")).id for _ in range(args.concurrency)]
            if name.startswith("roost"):

                async def roost_append(session: str, i: int, store: Any = store) -> None:
                    await store.append_node(session, "main", "request", content(i))

                paths.append(Measured(name, roost_append, sessions))
            else:
                raw = RawAppender(tmp / "raw.db", workers=4)  # the store's pool size
                stack.callback(raw.pool.shutdown)
                paths.append(Measured(name, raw.append, sessions))
        for path in paths:  # warm-up: connections, statement caches
            await measure(path, "seq", 1, 50)
            path.wall_ns, path.cpu_s, path.count = (
                {"seq": 0, "conc": 0},
                {"seq": 0.0, "conc": 0.0},
                {"seq": 0, "conc": 0},
            )
        seq_each = max(1, args.appends // args.rounds)
        conc_each = max(1, args.appends // args.rounds // args.concurrency)
        for r in range(args.rounds):
            for k in range(len(paths)):
                path = paths[(r + k) % len(paths)]
                await measure(path, "seq", 1, seq_each)
                await measure(path, "conc", args.concurrency, conc_each)

    results: dict[str, Any] = {}
    header = f"{'load / path':<40} {'wall µs':>9} {'cpu µs':>9} {'appends/s':>10}"
    print()
    print(header)
    print("-" * len(header))
    for load, label in (("seq", "1 appender"), ("conc", f"{args.concurrency} appenders")):
        print(label)
        figures = {}
        for path in paths:
            n = path.count[load]
            wall_us = path.wall_ns[load] / n / 1e3
            cpu_us = path.cpu_s[load] / n * 1e6
            rate = n / (path.wall_ns[load] / 1e9)
            figures[path.name] = {"wall_us": round(wall_us, 1), "cpu_us": round(cpu_us, 1)}
            print(f"  {path.name:<38} {wall_us:>9.1f} {cpu_us:>9.1f} {rate:>10.0f}")
        roost, raw = (figures[p.name] for p in paths)
        ratios = {
            "wall": round(roost["wall_us"] / raw["wall_us"], 2),
            "cpu": round(roost["cpu_us"] / raw["cpu_us"], 2),
        }
        print(f"  ratio roost / raw: wall {ratios['wall']:.2f}x, cpu {ratios['cpu']:.2f}x")
        results[label] = {"paths": figures, "ratio": ratios}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--appends", type=int, default=2000, help="measured appends per load")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent appenders")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.appends < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("need --appends, --concurrency and --rounds >= 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
