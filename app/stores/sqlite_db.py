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
checkpoints, task writes, of all runs in flight) shares one transaction and one commit,
each in its own savepoint, so one that fails is rolled back alone. A write returns only
once committed. Commits were an eighth of a short run's time under load.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from graphs.errors import StoreError

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
        self._queued: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._committing: asyncio.Task[None] | None = None

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
        the other writes of this loop iteration; returns once it is committed."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieve)  # a cancelled caller's failure is not "lost"
        self._queued.append((work, done))
        if self._committing is None:  # the first writer of this iteration opens a batch
            self._committing = asyncio.create_task(self._commit_queued())
        # A cancelled caller must not cancel the commit the others wait on.
        return await asyncio.shield(done)

    async def _commit_queued(self) -> None:
        batch, self._queued, self._committing = self._queued, [], None
        try:
            outcomes = await self.call(lambda conn: in_transaction(
                conn, lambda c: _each_in_savepoint(c, [work for work, _ in batch], self.path)))
        except BaseException as exc:
            for _, done in batch:
                if not done.done():
                    done.cancel() if isinstance(exc, asyncio.CancelledError) else (
                        done.set_exception(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, done), (value, error) in zip(batch, outcomes, strict=True):
            if not done.done():
                done.set_exception(error) if error is not None else done.set_result(value)

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


def _tune(conn: sqlite3.Connection) -> None:
    # WAL with synchronous=NORMAL: a commit survives the process being killed (what
    # resume is for); only an OS crash or power cut can lose the last commits.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()


def _each_in_savepoint(conn: sqlite3.Connection, works: list[Callable[[sqlite3.Connection], Any]],
                       path: str) -> list[tuple[Any, BaseException | None]]:
    outcomes: list[tuple[Any, BaseException | None]] = []
    for work in works:
        conn.execute("SAVEPOINT one_write")
        try:
            value = work(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO one_write")
            conn.execute("RELEASE one_write")
            error = StoreError(f"SQLite store {path}: {exc}") if isinstance(
                exc, sqlite3.Error) else exc
            outcomes.append((None, error))
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
