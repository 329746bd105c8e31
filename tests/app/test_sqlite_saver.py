"""The SQLite checkpoint saver and connection: LangGraph's conformance suite, group
commit, and waiting for another process's lock without blocking the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate

from flowloom.app.records import RunRecord
from flowloom.app.stores import sqlite_db
from flowloom.app.stores.base import RunQuery
from flowloom.app.stores.errors import StoreError
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.app.stores.sqlite_saver import InlineSqliteSaver
from tests.conftest import wait_until


async def test_saver_passes_langgraph_conformance_suite(tmp_path: Path) -> None:
    made = iter(range(1000))

    @checkpointer_test(name="InlineSqliteSaver")
    async def saver() -> AsyncIterator[InlineSqliteSaver]:
        async with InlineSqliteSaver.open(str(tmp_path / f"c{next(made)}.db")) as fresh:
            yield fresh

    report = await validate(saver)
    assert report.passed_all_base(), report.to_dict()


async def test_concurrent_task_writes_share_one_commit(tmp_path: Path) -> None:
    async with InlineSqliteSaver.open(str(tmp_path / "group.db")) as saver:
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": "",
                                   "checkpoint_id": "c1"}}
        commits: list[str] = []
        saver.conn.set_trace_callback(
            lambda sql: commits.append(sql) if sql.strip() == "COMMIT" else None)
        await asyncio.gather(*(saver.aput_writes(config, [("out", i)], f"task{i}")
                               for i in range(200)))
        saver.conn.set_trace_callback(None)
        assert len(commits) == 1
        rows = saver.conn.execute("SELECT count(*) FROM writes").fetchone()[0]
        assert rows == 200


async def test_a_failing_write_is_rolled_back_alone_in_its_batch(tmp_path: Path) -> None:
    async with InlineSqliteSaver.open(str(tmp_path / "fail.db")) as saver:
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": "",
                                   "checkpoint_id": "c1"}}
        await saver.aput_writes(config, [("out", 0)], "warm-up")  # creates the tables
        saver.conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON writes "
                           "WHEN NEW.task_id = 'bad' BEGIN SELECT RAISE(ABORT, 'no'); END")
        commits: list[str] = []
        saver.conn.set_trace_callback(
            lambda sql: commits.append(sql) if sql.strip() == "COMMIT" else None)
        good, bad = await asyncio.gather(saver.aput_writes(config, [("out", 1)], "good"),
                                         saver.aput_writes(config, [("out", 2)], "bad"),
                                         return_exceptions=True)
        saver.conn.set_trace_callback(None)
        assert good is None and len(commits) == 1  # one transaction for both
        assert isinstance(bad, StoreError) and "no" in str(bad)
        tasks = [r[0] for r in saver.conn.execute("SELECT task_id FROM writes ORDER BY rowid")]
        assert tasks == ["warm-up", "good"]  # the bad one left nothing behind


async def test_a_batch_that_fails_nowhere_takes_no_savepoints(tmp_path: Path) -> None:
    async with InlineSqliteSaver.open(str(tmp_path / "plain.db")) as saver:
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": "",
                                   "checkpoint_id": "c1"}}
        await saver.aput_writes(config, [("out", 0)], "warm-up")  # creates the tables
        statements: list[str] = []
        saver.conn.set_trace_callback(statements.append)
        await asyncio.gather(*(saver.aput_writes(config, [("out", i)], f"task{i}")
                               for i in range(3)))
        saver.conn.set_trace_callback(None)
        kinds = [sql.split()[0].upper() for sql in statements]
        assert kinds == ["BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"]


async def test_a_failing_write_alone_in_its_batch_leaves_nothing(tmp_path: Path) -> None:
    async with InlineSqliteSaver.open(str(tmp_path / "alone.db")) as saver:
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": "",
                                   "checkpoint_id": "c1"}}
        await saver.aput_writes(config, [("out", 0)], "warm-up")
        saver.conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON writes "
                           "WHEN NEW.idx = 1 BEGIN SELECT RAISE(ABORT, 'no'); END")
        with pytest.raises(StoreError, match="no"):  # its first row went in, its second not
            await saver.aput_writes(config, [("out", 1), ("more", 2)], "bad")
        await saver.aput_writes(config, [("out", 3)], "after")  # the connection goes on
        tasks = [r[0] for r in saver.conn.execute("SELECT task_id FROM writes ORDER BY rowid")]
        assert tasks == ["warm-up", "after"]


async def test_the_writes_around_a_failing_one_keep_their_order_and_results(
        tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "around.db")
    await store.save_run(_record("r"))
    db = await store._db()
    db.conn.execute("CREATE TABLE seen (n INTEGER)")

    def insert(n: int) -> Any:
        def work(conn: sqlite3.Connection) -> int:
            if n == 2:
                raise ValueError("two")
            return conn.execute("INSERT INTO seen VALUES (?)", (n,)).lastrowid or 0
        return work

    got = await asyncio.gather(*(db.write(insert(n)) for n in range(5)),
                               return_exceptions=True)
    assert isinstance(got[2], ValueError) and [got[i] for i in (0, 1, 3, 4)] == [1, 2, 3, 4]
    assert [r[0] for r in db.conn.execute("SELECT n FROM seen ORDER BY rowid")] == [0, 1, 3, 4]
    await store.close()


class LoopTicks:
    """Counts how often a task gets the event loop while the block runs."""

    def __init__(self, every_s: float) -> None:
        self.every_s, self.count = every_s, 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            self.count += 1

    async def __aenter__(self) -> LoopTicks:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def _record(execution_id: str) -> RunRecord:
    return RunRecord(execution_id=execution_id, workflow_id="w", workflow_version=1,
                     status="running")


async def test_a_lock_held_by_another_process_is_waited_for_without_blocking(
        tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "busy.db")
    await store.save_run(_record("first"))
    other = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)  # "another process"
    other.execute("BEGIN IMMEDIATE")
    async with LoopTicks(0.005) as ticks:
        write = asyncio.create_task(store.save_run(_record("second")))

        async def ticked() -> bool:
            return ticks.count >= 20

        await wait_until(ticked, "20 ticks of the loop")  # the loop ran everything else ...
        assert not write.done()  # ... while the write was still waiting for the lock
        other.execute("COMMIT")
        await asyncio.wait_for(write, 30)
    assert await store.get_run("second") is not None
    other.close()
    await store.close()


async def test_a_lock_never_released_ends_in_a_clear_store_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT_S", 0.2)
    store = SqliteStore(tmp_path / "stuck.db")
    await store.save_run(_record("first"))
    other = sqlite3.connect(tmp_path / "stuck.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match=r"stayed locked by another process for 0\.2s$"):
        # a generous deadline, well short of the 30 s the store would otherwise wait
        await asyncio.wait_for(store.save_run(_record("second")), 20)
    other.execute("ROLLBACK")
    other.close()
    stored = await store.get_run("first")  # what was stored before is untouched
    assert stored is not None and stored.status == "running"
    await store.close()


async def test_retention_deletes_in_batches_letting_the_loop_run(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from flowloom.app.stores.sqlite import RETENTION_BATCH
    store = SqliteStore(tmp_path / "old.db")
    old = datetime.now(UTC) - timedelta(days=400)
    total = RETENTION_BATCH * 5
    for n in range(total):
        await store.save_run(RunRecord(execution_id=f"old{n}", created_at=old, status="failed"))
        await store.claim_idempotency_key(f"key{n}", "hash", f"old{n}")
    await store.save_run(_record("kept"))
    async with LoopTicks(0) as ticks:
        await asyncio.sleep(0)
        deleted = await store.delete_runs_before(datetime.now(UTC) - timedelta(days=30))
        during = ticks.count
    assert deleted == total
    assert during >= 4  # the loop ran between the batches, not once at the end
    db = await store._db()
    assert await db.first("SELECT count(*) FROM idempotency_keys") == (0,)
    assert [r.execution_id for r in (await store.list_runs(RunQuery())).runs] == ["kept"]
    await store.close()


def test_a_store_outlives_an_event_loop(tmp_path: Path) -> None:
    # The CLI and tests run one store on several loops, one after another.
    store = SqliteStore(tmp_path / "loops.db")

    async def abandon_a_write() -> None:
        pending = asyncio.ensure_future(store.save_run(_record("left")))
        await asyncio.sleep(0)  # queued; the loop ends before anyone awaits it again
        pending.cancel()

    async def abandon_writes_waiting_for_a_lock() -> None:
        other = sqlite3.connect(tmp_path / "loops.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        waiting = [asyncio.ensure_future(store.save_run(_record("w1")))]
        await asyncio.sleep(0.02)  # that batch now waits for the lock in a task ...
        waiting.append(asyncio.ensure_future(store.save_run(_record("w2"))))  # ... this behind
        await asyncio.sleep(0.02)
        assert not any(w.done() for w in waiting)
        other.execute("ROLLBACK")
        other.close()  # and the loop ends with both writes still waiting

    asyncio.run(store.save_run(_record("first")))
    asyncio.run(abandon_a_write())
    asyncio.run(abandon_writes_waiting_for_a_lock())

    async def later() -> list[str]:
        await store.save_run(_record("second"))
        runs = (await store.list_runs(RunQuery())).runs
        await store.close()
        return sorted(r.execution_id for r in runs)

    # No write waits forever on a loop that is gone; an abandoned one may still commit.
    assert {"first", "second"} <= set(asyncio.run(asyncio.wait_for(later(), 5)))


async def test_a_write_that_raises_oddly_fails_alone_and_hangs_nothing(tmp_path: Path) -> None:
    from flowloom.app.stores.sqlite_db import SqliteDb
    db = await SqliteDb.open(tmp_path / "odd.db")
    await db.call(lambda conn: conn.execute("CREATE TABLE t (v INTEGER)"))

    def empty_next(conn: sqlite3.Connection) -> None:
        next(iter(conn.execute("SELECT v FROM t WHERE v < 0")))  # StopIteration

    results = await asyncio.wait_for(asyncio.gather(
        db.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)")),
        db.write(empty_next),
        db.write(lambda conn: conn.execute("INSERT INTO t VALUES (2)")),
        return_exceptions=True), 5)
    assert isinstance(results[1], StoreError) and "StopIteration" in str(results[1])
    assert [r for i, r in enumerate(results) if i != 1 and isinstance(r, BaseException)] == []
    assert await db.fetchall("SELECT v FROM t ORDER BY v") == [(1,), (2,)]
    db.close()
