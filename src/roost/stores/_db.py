"""The database every store shares: engine, transactions, migrations, and the thread pool.

Stores use synchronous SQLAlchemy and run each unit of work in a small dedicated thread pool
(:meth:`Database.run`), so the event loop never blocks on the database. The pool has as
many threads as the engine has pooled connections: a worker thread never waits for a
connection, and store traffic does not compete with ``asyncio.to_thread`` users (model
engines) for the default executor.

SQLite specifics live here and nowhere else in the relational stores:

* the driver is ``pysqlite3`` (from ``pysqlite3-binary``), whose SQLite can load extensions,
  so the sqlite-vec backend can work on the same database file;
* WAL journal, ``synchronous=NORMAL``, foreign keys on, and a busy timeout;
* SQLAlchemy emits ``BEGIN`` itself (the driver's own transaction handling is off): reads
  use a deferred ``BEGIN`` (a consistent snapshot that never blocks in WAL mode) and writes
  use ``BEGIN IMMEDIATE``, taking the write lock up front so that concurrent writers wait
  for each other (busy timeout) instead of failing on a lock upgrade. This also makes DDL
  transactional, so migrations are all-or-nothing.

Postgres (driver ``psycopg`` 3, ``postgresql+psycopg://...``) has no single-writer lock, so:

* writes run at ``READ COMMITTED``; everything that must not lose an update (a branch head, a
  KV ref) is a compare-and-swap ``UPDATE ... WHERE head = <old>``, which Postgres re-checks
  after waiting for a concurrent writer of the row: the loser matches no row, raises
  :class:`Conflict` and :meth:`Database.transact` retries it from scratch, as it retries a
  lost uniqueness race (``IntegrityError``), a serialization failure or a deadlock;
* reads run at ``REPEATABLE READ READ ONLY``: one snapshot for the whole read, like SQLite's
  deferred ``BEGIN`` in WAL mode (read-only snapshots never fail to serialize);
* concurrent migrations are serialized by a transaction-scoped advisory lock.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast

import msgspec
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, CursorResult, Result, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from roost.protocol import RoostError, ServiceUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("roost.stores")

P = ParamSpec("P")
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
A = TypeVar("A")  # an item of a group commit
H = TypeVar("H")  # a transaction handle: an ORM Session or a Core Connection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 30.0
_WRITE_OPTION = "roost_write"
_CAS_ATTEMPTS = 25
_INTEGRITY_ATTEMPTS = 3
_PG_MIGRATION_LOCK = 0x726F6F7374  # "roost": serializes concurrent migrations on Postgres
# SQLSTATEs of transactions Postgres aborted because of concurrent ones: retried from scratch
_PG_RETRYABLE = {"40001": "serialization failure", "40P01": "deadlock"}


class Conflict(Exception):
    """A compare-and-swap lost a race with another writer; :meth:`Database.transact` retries."""


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON (sorted keys, no whitespace): the input of every content hash."""
    return msgspec.json.encode(value, order="sorted")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE or DELETE executed through an ORM session."""
    return cast(CursorResult[Any], result).rowcount


def _json_serializer(value: Any) -> str:
    return canonical_json(value).decode()


class LruCache(Generic[K, V]):
    """A small thread-safe LRU map (immutable content-addressed data; short-lived entries)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class Database:
    """One database (SQLite file or Postgres) shared by all stores.

    Construct, then :meth:`migrate`; use :meth:`read` / :meth:`write` / :meth:`transact`
    inside functions handed to :meth:`run`. :meth:`close` when done.
    """

    def __init__(self, url: str | URL, *, workers: int = 4) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self.engine, workers = _create_engine(self.url, workers)
        self._write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        read_engine = self.engine
        if self.dialect == "postgresql":
            read_engine = self.engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        self._read_engine = read_engine
        self._reader = sessionmaker(read_engine, expire_on_commit=False)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="roost-db")
        self._closed = False

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    # --- transactions (call from worker threads) ---------------------------------------

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read transaction (a consistent snapshot); rolled back at the end."""
        with self._reader() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed if the block succeeds, rolled back if it raises."""
        with self._writer() as session, session.begin():
            yield session

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """:meth:`read` for Core statements: a Connection, without the ORM session's cost."""
        with self._read_engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """:meth:`write` for Core statements (the hot paths: DAG appends)."""
        with self._write_engine.connect() as connection, connection.begin():
            yield connection

    def transact(self, work: Callable[[Session], T], *, what: str = "write") -> T:
        """Run ``work`` in a write transaction, retrying it from scratch when it raises
        :class:`Conflict` or hits a uniqueness race (``IntegrityError``), and on Postgres
        when it is aborted as a serialization failure or a deadlock. ``work`` must check
        its preconditions itself, so a retried duplicate becomes a proper error."""
        return self._retrying(self.write, work, what)

    def transact_core(self, work: Callable[[Connection], T], *, what: str = "write") -> T:
        """:meth:`transact` on a Core :class:`~sqlalchemy.Connection`."""
        return self._retrying(self.write_connection, work, what)

    def _retrying(
        self,
        open_transaction: Callable[[], AbstractContextManager[H]],
        work: Callable[[H], T],
        what: str,
    ) -> T:
        integrity_errors = 0
        for attempt in range(_CAS_ATTEMPTS):
            try:
                with open_transaction() as handle:
                    return work(handle)
            except IntegrityError:
                # a race (two inserts of one key) resolves on retry; anything else persists
                integrity_errors += 1
                if integrity_errors >= _INTEGRITY_ATTEMPTS:
                    raise
            except Conflict as exc:
                log.debug("%s: retrying after %s (attempt %d)", what, exc, attempt + 1)
            except DBAPIError as exc:
                reason = _PG_RETRYABLE.get(getattr(exc.orig, "sqlstate", None) or "")
                if reason is None:
                    raise
                log.debug("%s: retrying after a %s (attempt %d)", what, reason, attempt + 1)
            time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.1)))
        raise ServiceUnavailableError(
            f"{what}: gave up after {_CAS_ATTEMPTS} attempts lost races with other writers"
        )

    # --- running work off the event loop -----------------------------------------------

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking database work in the database's thread pool.

        If the awaiting task is cancelled the work still runs to the end (a transaction is
        never abandoned half-way); only its result is dropped.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def reading(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(session, *args)`` in a read transaction, in the thread pool."""

        def call() -> T:
            with self.read() as session:
                return fn(session, *args, **kwargs)

        return await self.run(call)

    async def writing(self, work: Callable[[Session], T], *, what: str = "write") -> T:
        """``work(session)`` in a retried write transaction (:meth:`transact`), in the
        thread pool."""
        return await self.run(self.transact, work, what=what)

    # --- lifecycle ---------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (no-op when already there).

        Runs in one transaction holding the write lock, so processes opening a fresh
        database at the same time migrate it once.
        """
        from alembic import command  # imported when needed: importing roost stays fast

        config = alembic_config()
        with self._write_engine.connect() as connection:
            if self.dialect == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()

    def close_sync(self) -> None:
        """Wait for running work, then close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)


class GroupCommit(Generic[A, T]):
    """Concurrent writes of one kind share a transaction: a group commit.

    :meth:`submit` queues an item and waits until it is committed. While a batch is being
    written, newly submitted items queue up and go together in the next one: one trip to the
    database thread and one transaction for all of them, instead of one each, all waiting
    on the write lock in turn. A lone item still goes at once.

    ``apply(connection, item)`` writes one item. It may raise a :class:`RoostError` (a
    failed precondition: unknown session, say) only *before* it writes: that item fails
    and the rest of the batch goes on. Any other exception rolls the batch back, and each
    of its items is written again alone, with :meth:`Database.transact_core`'s retries.
    """

    def __init__(
        self,
        db: Database,
        apply: Callable[[Connection, A], T],
        *,
        what: str = "write",
        max_batch: int = 64,
    ) -> None:
        self._db = db
        self._apply = apply
        self._what = what
        self._max_batch = max_batch
        self._queue: deque[tuple[A, asyncio.Future[T]]] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: A) -> T:
        """Write ``item`` (with whatever else is waiting) and return what ``apply`` returned.

        A cancelled caller's item is still written; only the result is dropped.
        """
        loop = asyncio.get_running_loop()
        if self._writer is not None and self._writer.get_loop() is not loop:
            # another event loop's batch is in flight (one store, several threads' loops):
            # its futures belong to that loop, so this item goes alone
            return await self._db.run(self._db.transact_core, self._apply_to(item), what=self._what)
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((item, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write_queued())
        # a cancelled caller cancels only this future: the queued item is written anyway
        return await future

    async def _write_queued(self) -> None:
        try:
            while self._queue:
                batch = [
                    self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))
                ]
                try:
                    outcomes = await self._db.run(self._commit, [item for item, _ in batch])
                except asyncio.CancelledError:  # the loop is shutting down
                    for _, future in [*batch, *self._queue]:
                        future.cancel()
                    self._queue.clear()
                    raise
                except Exception as exc:  # the database is closed or gone: fail them all
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._writer = None

    def _commit(self, items: list[A]) -> list[T | BaseException]:
        outcomes: list[T | BaseException] = []
        try:
            with self._db.write_connection() as connection:
                for item in items:
                    try:
                        outcomes.append(self._apply(connection, item))
                    except RoostError as exc:  # raised before the item wrote anything
                        outcomes.append(exc)
            return outcomes
        except Exception:
            # the whole batch rolled back (a lost race on Postgres, say): each alone, retried
            return [self._alone(item) for item in items]

    def _alone(self, item: A) -> T | BaseException:
        try:
            return self._db.transact_core(self._apply_to(item), what=self._what)
        except Exception as exc:
            return exc

    def _apply_to(self, item: A) -> Callable[[Connection], T]:
        return lambda connection: self._apply(connection, item)


def alembic_config() -> Config:
    """The Alembic configuration of roost's migrations, built in code (no ini file)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def _create_engine(url: URL, workers: int) -> tuple[Engine, int]:
    if url.get_backend_name() != "sqlite":
        engine = create_engine(
            url,
            pool_size=workers,
            max_overflow=2,
            pool_pre_ping=True,
            json_serializer=_json_serializer,
            json_deserializer=msgspec.json.decode,
        )
        return engine, workers

    import pysqlite3.dbapi2 as sqlite_dbapi  # SQLite that can load extensions (sqlite-vec)

    url = url.set(drivername="sqlite+pysqlite")
    database = url.database or ""
    memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    kwargs: dict[str, Any] = {}
    if memory:
        # one connection shared by everything: serialize all work on one thread
        kwargs["poolclass"] = StaticPool
        workers = 1
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs.update(pool_size=workers, max_overflow=2)
    engine = create_engine(
        url,
        module=sqlite_dbapi,
        connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
        json_serializer=_json_serializer,
        json_deserializer=msgspec.json.decode,
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the driver, decides where transactions begin (see do_begin)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise OperationalError(
                        "PRAGMA journal_mode = WAL", None, Exception(f"journal mode is {mode}")
                    )
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _do_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine, workers
