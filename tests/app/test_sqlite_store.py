"""What only the SQLite store does: opening its file (folders made, errors named),
closing and reopening, the microsecond a claim moves the time by, the created_at of a
workflow, and retention's batches and checkpoint rows."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowloom.app.records import RunRecord
from flowloom.app.runner import execute_workflow_async
from flowloom.app.settings import load_settings
from flowloom.app.stores import sqlite as sqlite_store
from flowloom.app.stores.base import RunQuery
from flowloom.app.stores.errors import StoreError
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.app.stores.sqlite_saver import InlineSqliteSaver
from tests.conftest import chain, t


def record(execution_id: str, at: datetime, **fields: object) -> RunRecord:
    return RunRecord(execution_id=execution_id, created_at=at, **fields)  # type: ignore[arg-type]


async def test_the_store_makes_the_folders_of_its_file(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a" / "b" / "flowloom.db")
    await store.save_run(record("r", datetime.now(UTC), status="queued"))
    assert (tmp_path / "a" / "b" / "flowloom.db").is_file()
    await store.close()


async def test_a_folder_that_cannot_be_made_is_a_store_error_naming_the_path(
        tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    path = tmp_path / "file" / "sub" / "flowloom.db"
    store = SqliteStore(path)
    with pytest.raises(StoreError) as caught:
        await store.get_run("r")
    assert str(caught.value).startswith(f"cannot open the SQLite store at {path}: ")
    assert "Errno" in str(caught.value)


async def test_closing_an_unopened_store_does_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "never.db")
    await store.close()
    assert not (tmp_path / "never.db").exists()


async def test_close_closes_the_connection_and_the_store_opens_again(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "again.db")
    await store.save_run(record("before", datetime.now(UTC), status="queued"))
    db = await store._db()
    async with store.checkpointer() as first:
        assert isinstance(first, InlineSqliteSaver)
    await store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        db.conn.execute("SELECT 1")
    await store.save_run(record("after", datetime.now(UTC), status="queued"))
    assert [r.execution_id for r in (await store.list_runs(RunQuery())).runs] == [
        "after", "before"]
    async with store.checkpointer() as second:  # on the new connection, not the closed one
        assert isinstance(second, InlineSqliteSaver) and second is not first
        config = {"configurable": {"thread_id": "none", "checkpoint_ns": ""}}
        assert await second.aget_tuple(config) is None  # type: ignore[arg-type]
    await store.close()


async def test_a_claim_moves_the_time_by_one_microsecond_past_what_was_seen(
        tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "claim.db")
    ahead = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=500_000)
    await store.save_run(record("skewed", ahead, status="queued", updated_at=ahead))
    assert await store.claim_run("skewed", "queued", ahead) is True
    claimed = await store.get_run("skewed")
    assert claimed is not None
    assert claimed.updated_at == ahead.replace(microsecond=500_001)
    await store.close()


async def test_naive_times_are_utc_on_a_host_in_another_zone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        store = SqliteStore(tmp_path / "zone.db")
        ahead = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=500_000)
        await store.save_run(record("naive", ahead, status="queued", updated_at=ahead))
        assert await store.claim_run("naive", "queued", ahead.replace(tzinfo=None)) is True
        window = RunQuery(since=ahead.replace(tzinfo=None),
                          until=(ahead + timedelta(seconds=1)).replace(tzinfo=None))
        assert [r.execution_id for r in (await store.list_runs(window)).runs] == ["naive"]
        await store.close()
    finally:
        monkeypatch.undo()
        time.tzset()


async def test_retention_deletes_in_batches_yielding_without_waiting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "RETENTION_BATCH", 3)
    store = SqliteStore(tmp_path / "batches.db")
    old = datetime.now(UTC) - timedelta(days=400)
    for n in range(8):
        await store.save_run(record(f"old{n}", old, status="succeeded"))
    await store.save_run(record("waits", old, status="waiting"))
    db = await store._db()
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await real_sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    assert await store.delete_runs_before(datetime.now(UTC)) == 8
    monkeypatch.setattr(asyncio, "sleep", real_sleep)
    db.conn.set_trace_callback(None)
    per_commit, runs = [], 0
    for sql in statements:
        if sql.startswith("DELETE FROM runs "):
            runs += 1
        elif sql.strip() == "COMMIT" and runs:
            per_commit.append(runs)
            runs = 0
    assert per_commit == [3, 3, 2]
    assert sleeps == [0, 0, 0]  # the loop runs between batches; no batch waits a timer
    assert [r.execution_id for r in (await store.list_runs(RunQuery())).runs] == ["waits"]
    await store.close()


async def test_retention_deletes_the_checkpoints_and_writes_of_a_run(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "cp.db")
    settings = load_settings(store=f"sqlite:///{tmp_path / 'cp.db'}")
    doc = {"id": "cp", "nodes": [t("a", 1), t("b", "{{ a }}")], "edges": chain("a", "b")}
    for execution_id in ("old", "kept"):
        done = await execute_workflow_async(doc, {}, execution_id=execution_id, store=store,
                                            settings=settings)
        assert done.status == "succeeded"
    db = await store._db()

    async def rows(table: str, thread: str) -> int:
        row = await db.first(f"SELECT count(*) FROM {table} WHERE thread_id = ?", (thread,))
        return int(row[0]) if row else -1

    assert [await rows(t, "old") > 0 for t in ("checkpoints", "writes")] == [True, True]
    kept = [await rows(t, "kept") for t in ("checkpoints", "writes")]
    await db.execute("UPDATE runs SET created_at = '2000-01-01T00:00:00.000000Z' "
                     "WHERE execution_id = 'old'")
    assert await store.delete_runs_before(datetime.now(UTC) - timedelta(days=1)) == 1
    assert [await rows(t, "old") for t in ("checkpoints", "writes")] == [0, 0]
    assert [await rows(t, "kept") for t in ("checkpoints", "writes")] == kept
    await store.close()
