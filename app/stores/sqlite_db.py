"""One SQLite connection, used from the event loop's own thread.

A statement on the WAL takes microseconds; handing it to a thread, as aiosqlite does,
costs 5-20x that in queueing and GIL hand-offs, and was most of a short run's time. So
calls run inline. Nothing can interleave with a call inside the process, which makes
every call (a whole transaction included) atomic here without a lock, and no read is
ever left half-done across an await.

Waiting for another process's write lock must not block the loop: SQLite's busy
timeout is 0, and a call that meets a lock is retried after an `asyncio.sleep`, for up
to `BUSY_TIMEOUT_S`.

Writes are group-committed: every write queued in one loop iteration (records, events,
checkpoints, task writes, of all runs in flight) shares one transaction and one commit.
A write that fails is rolled back alone: the batch is rolled back and run again with
each write in a savepoint of its own (savepoints for every batch cost ~3 us a write, and
writes almost never fail). A write is SQL only, so running it again is safe. A write
returns only once committed. Commits were an eighth of a short run's time under load.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from flowloom.app.stores.errors import StoreError

T = TypeVar("T")
BUSY_TIMEOUT_S = 30.0  # how long a call waits for another process on the same file
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_FIRST_BACKOFF_S = 0.0002
_MAX_BACKOFF_S = 0.005  # transactions here last ~0.1 ms: look again soon


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)


class SqliteDb:
    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self._queued: list[_Write] = []
        self._waiting: asyncio.Task[None] | None = None  # a batch waiting for the lock
        self._scheduled: asyncio.AbstractEventLoop | None = None  # where a commit is due

    @classmethod
    async def open(cls, path: str | Path) -> SqliteDb:
        try:
            # Autocommit: a statement is its own transaction unless write() opens one.
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                   timeout=0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store at {path}: {exc}") from None
        db = cls(conn, str(path))
        await db.call(_tune)
        return db

    async def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` now; if another process holds the lock, retry it without blocking."""
        backoff, deadline = _FIRST_BACKOFF_S, time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return work(self.conn)
            except sqlite3.Error as exc:
                if not (isinstance(exc, sqlite3.OperationalError) and is_busy(exc)):
                    raise StoreError(f"SQLite store {self.path}: {exc}") from exc
                if time.monotonic() > deadline:
                    raise StoreError(f"SQLite store {self.path} stayed locked by another "
                                     f"process for {BUSY_TIMEOUT_S:g}s") from None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in a transaction that takes the write lock up front, shared with
        the other writes of this loop iteration; returns once it is committed. Writes
        commit in the order they were made. A cancelled caller's write still commits."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._queued.append((work, done))
        if self._waiting is not None and self._waiting.get_loop() is not loop:
            self._waiting = None  # left by a loop that ended (tests, the CLI make new ones)
        if self._waiting is None and self._scheduled is not loop:
            self._scheduled = loop
            loop.call_soon(self._commit_queued)  # a callback, not a task: cheaper per write
        return await done

    def _commit_queued(self) -> None:
        self._scheduled = None
        if self._waiting is not None or not self._queued:
            return
        batch, self._queued = self._queued, []
        try:
            outcomes = self._run_batch(batch)
        except sqlite3.OperationalError as exc:
            if is_busy(exc):  # another process writes: wait for it off the loop's back
                self._waiting = asyncio.ensure_future(self._commit_when_free(batch))
                return
            _settle(batch, error=_as_store_error(exc, self.path))
            return
        except BaseException as exc:  # a callback must settle every write, whatever happens
            _settle(batch, error=_as_store_error(exc, self.path))
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return
        _settle(batch, outcomes)

    async def _commit_when_free(self, batch: list[_Write]) -> None:
        try:
            while True:  # writes made meanwhile queue behind this batch, in order
                try:
                    outcomes = await self.call(partial(_run_batch_on, self, batch))
                except asyncio.CancelledError:  # the loop is ending: fail what waits
                    closed = StoreError(f"SQLite store {self.path}: stopped before commit")
                    _settle(batch + self._queued, error=closed)
                    self._queued = []
                    raise
                except BaseException as exc:
                    _settle(batch, error=_as_store_error(exc, self.path))
                    if isinstance(exc, KeyboardInterrupt | SystemExit):
                        raise
                else:
                    _settle(batch, outcomes)
                if not self._queued:
                    return
                batch, self._queued = self._queued, []
        finally:
            if self._waiting is asyncio.current_task():  # not a newer loop's task
                self._waiting = None

    def _run_batch(self, batch: list[_Write]) -> list[tuple[Any, BaseException | None]]:
        works = [work for work, _ in batch]
        try:  # almost always every write goes through: no savepoint each (~3 us a write)
            return in_transaction(self.conn, lambda c: _all_at_once(c, works))
        except _WriteFailed as failed:  # rolled back whole: again, each write on its own
            if len(works) == 1:
                return [(None, _as_store_error(failed.error, self.path))]
            return in_transaction(self.conn, lambda c: _each_in_savepoint(c, works, self.path))

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return await self.call(lambda conn: conn.execute(sql, args).fetchall())

    async def first(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return await self.call(lambda conn: conn.execute(sql, args).fetchone())

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one writing statement; returns the number of rows it changed."""
        return await self.write(lambda conn: conn.execute(sql, args).rowcount)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.write(lambda conn: conn.executemany(sql, rows))

    def close(self) -> None:
        self.conn.close()


def _run_batch_on(db: SqliteDb, batch: list[_Write], _: sqlite3.Connection
                  ) -> list[tuple[Any, BaseException | None]]:
    return db._run_batch(batch)


def at_text(value: datetime) -> str:
    """A sortable UTC timestamp: text order is time order. A naive time is UTC (as on
    MongoDB, and as `claim_run` reads it), not the host's local time."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tune(conn: sqlite3.Connection) -> None:
    # WAL with synchronous=NORMAL: a commit survives the process being killed (what
    # resume is for); only an OS crash or power cut can lose the last commits.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")


_Write = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]


def _as_store_error(exc: BaseException, path: str) -> Exception:
    """What a writer gets: store errors named as such; its own exceptions unchanged,
    except those a future cannot carry (StopIteration, CancelledError)."""
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"SQLite store {path}: {exc}")
    if isinstance(exc, Exception) and not isinstance(exc, StopIteration):
        return exc
    return StoreError(f"SQLite store {path}: a write raised {type(exc).__name__}")


def _settle(batch: list[_Write], outcomes: list[tuple[Any, BaseException | None]] | None = None,
            error: BaseException | None = None) -> None:
    for index, (_, done) in enumerate(batch):
        if done.done() or done.get_loop().is_closed():  # its caller is gone; the write
            continue  # went ahead regardless
        value, failed = outcomes[index] if outcomes is not None else (None, error)
        try:
            done.set_exception(failed) if failed is not None else done.set_result(value)
        except (RuntimeError, TypeError):  # a closing loop: leave this one, settle the rest
            continue


class _WriteFailed(Exception):
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _all_at_once(conn: sqlite3.Connection, works: list[Callable[[sqlite3.Connection], Any]]
                 ) -> list[tuple[Any, BaseException | None]]:
    """Every write of a batch, in the batch's transaction; the first that raises rolls
    the whole batch back (writes are SQL only, so they can run again)."""
    outcomes: list[tuple[Any, BaseException | None]] = []
    for work in works:
        try:
            outcomes.append((work(conn), None))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise _WriteFailed(exc) from exc
    return outcomes


def _each_in_savepoint(conn: sqlite3.Connection, works: list[Callable[[sqlite3.Connection], Any]],
                       path: str) -> list[tuple[Any, BaseException | None]]:
    outcomes: list[tuple[Any, BaseException | None]] = []
    for work in works:
        conn.execute("SAVEPOINT one_write")
        try:
            value = work(conn)
        except BaseException as exc:
            conn.execute("ROLLBACK TO one_write")
            conn.execute("RELEASE one_write")
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            outcomes.append((None, _as_store_error(exc, path)))
            continue
        conn.execute("RELEASE one_write")
        outcomes.append((value, None))
    return outcomes


def in_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result
