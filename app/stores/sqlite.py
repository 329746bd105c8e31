"""The embedded store: one SQLite file for workflows, run records, event logs and
checkpoints. Nothing to run beside the process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from app.records import RunRecord
from app.stores.base import (
    RunPage,
    RunQuery,
    StoredWorkflow,
    decode_cursor,
    encode_cursor,
    same_document,
)
from app.stores.sqlite_saver import GroupCommitSqliteSaver
from graphs.errors import StoreError

_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT NOT NULL, version INTEGER NOT NULL, document TEXT NOT NULL,
    created_at TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (id, version));
CREATE TABLE IF NOT EXISTS runs (
    execution_id TEXT PRIMARY KEY, workflow_id TEXT, workflow_version INTEGER,
    status TEXT NOT NULL, created_at TEXT NOT NULL, cancel_requested_by TEXT,
    updated_at TEXT, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow_id, created_at DESC,
                                                    execution_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at DESC, execution_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at DESC, execution_id DESC);
CREATE INDEX IF NOT EXISTS runs_unfinished ON runs (status, updated_at)
    WHERE status IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, execution_id TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run_events (
    execution_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq));
"""


def _at(value: datetime) -> str:
    """A sortable UTC timestamp: text order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def _db(self) -> aiosqlite.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = await aiosqlite.connect(self.path)
                await _migrate(conn)
                await conn.executescript(_SCHEMA)
                await conn.execute("PRAGMA synchronous=NORMAL")
                await conn.commit()
            except (OSError, aiosqlite.Error) as exc:
                raise StoreError(f"cannot open the SQLite store at {self.path}: {exc}") from None
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # --- workflows -----------------------------------------------------------------

    async def put_workflow(self, workflow_id: str, document: dict[str, Any],
                           *, new_version: bool = False) -> StoredWorkflow:
        db = await self._db()
        latest = await self.get_workflow(workflow_id, include_deleted=True)
        if latest is not None and not new_version and same_document(latest.document, document):
            if await self.get_workflow(workflow_id) is None:  # undelete on re-create
                await db.execute("UPDATE workflows SET deleted = 0 WHERE id = ?",
                                 (workflow_id,))
                await db.commit()
            return latest
        version = max(int(document.get("version") or 1), latest.version + 1 if latest else 1)
        stored = StoredWorkflow(workflow_id, version, {**document, "id": workflow_id,
                                                       "version": version}, datetime.now(UTC))
        await db.execute("UPDATE workflows SET deleted = 0 WHERE id = ?", (workflow_id,))
        await db.execute("INSERT INTO workflows VALUES (?, ?, ?, ?, 0)",
                         (workflow_id, version, json.dumps(stored.document),
                          _at(stored.created_at)))
        await db.commit()
        return stored

    async def get_workflow(self, workflow_id: str, version: int | None = None, *,
                           include_deleted: bool = False) -> StoredWorkflow | None:
        db = await self._db()
        live = "" if include_deleted else " AND deleted = 0"
        if version is None:
            sql = f"SELECT * FROM workflows WHERE id = ?{live} ORDER BY version DESC LIMIT 1"
            args: tuple[Any, ...] = (workflow_id,)
        else:
            sql = f"SELECT * FROM workflows WHERE id = ? AND version = ?{live}"
            args = (workflow_id, version)
        async with db.execute(sql, args) as cursor:
            row = await cursor.fetchone()
        return _workflow(row) if row else None

    async def list_workflows(self, *, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        db = await self._db()
        sql = ("SELECT w.* FROM workflows w JOIN (SELECT id, MAX(version) AS v FROM workflows "
               "WHERE deleted = 0 GROUP BY id) latest ON w.id = latest.id AND w.version = "
               "latest.v ORDER BY w.id LIMIT ? OFFSET ?")
        async with db.execute(sql, (limit, offset)) as cursor:
            return [_workflow(row) for row in await cursor.fetchall()]

    async def delete_workflow(self, workflow_id: str) -> bool:
        # Versions stay, marked deleted, so the run history can still show what ran.
        db = await self._db()
        cursor = await db.execute("UPDATE workflows SET deleted = 1 WHERE id = ? AND deleted = 0",
                                  (workflow_id,))
        await db.commit()
        return (cursor.rowcount or 0) > 0

    # --- runs ----------------------------------------------------------------------

    async def save_run(self, record: RunRecord) -> None:
        db = await self._db()
        await db.execute(
            "INSERT INTO runs (execution_id, workflow_id, workflow_version, status, created_at, "
            "updated_at, record) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(execution_id) DO "
            "UPDATE SET status = excluded.status, updated_at = excluded.updated_at, "
            "record = excluded.record",
            (record.execution_id, record.workflow_id, record.workflow_version, record.status,
             _at(record.created_at), _at(record.updated_at or record.created_at),
             record.model_dump_json()))
        await db.commit()

    async def get_run(self, execution_id: str) -> RunRecord | None:
        db = await self._db()
        async with db.execute("SELECT record FROM runs WHERE execution_id = ?",
                              (execution_id,)) as cursor:
            row = await cursor.fetchone()
        return RunRecord.model_validate_json(row[0]) if row else None

    async def list_runs(self, query: RunQuery) -> RunPage:
        db = await self._db()
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("workflow_id", query.workflow_id), ("status", query.status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.since is not None:
            where.append("created_at >= ?")
            args.append(_at(query.since))
        if query.until is not None:
            where.append("created_at < ?")
            args.append(_at(query.until))
        if query.cursor:
            at, execution_id = decode_cursor(query.cursor)
            where.append("(created_at, execution_id) < (?, ?)")
            args += [_at(at), execution_id]
        sql = "SELECT record FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, execution_id DESC LIMIT ?"
        async with db.execute(sql, (*args, query.limit + 1)) as cursor:
            rows = list(await cursor.fetchall())
        runs = [RunRecord.model_validate_json(r[0]) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        last = runs[-1] if runs else None
        return RunPage(runs, encode_cursor(last.created_at, last.execution_id)
                       if more and last else None)

    async def append_events(self, execution_id: str, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        db = await self._db()
        await db.executemany("INSERT OR IGNORE INTO run_events VALUES (?, ?, ?)",
                             [(execution_id, e["seq"], json.dumps(e, default=str))
                              for e in events])
        await db.commit()

    async def list_events(self, execution_id: str, after: int = 0) -> list[dict[str, Any]]:
        db = await self._db()
        async with db.execute("SELECT event FROM run_events WHERE execution_id = ? AND seq > ? "
                              "ORDER BY seq", (execution_id, after)) as cursor:
            return [json.loads(row[0]) for row in await cursor.fetchall()]

    async def request_cancel(self, execution_id: str, by: str) -> None:
        db = await self._db()
        await db.execute("UPDATE runs SET cancel_requested_by = ? WHERE execution_id = ?",
                         (by, execution_id))
        await db.commit()

    async def cancel_requested(self, execution_id: str) -> str | None:
        db = await self._db()
        async with db.execute("SELECT cancel_requested_by FROM runs WHERE execution_id = ?",
                              (execution_id,)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def stale_runs(self, before: datetime) -> list[RunRecord]:
        db = await self._db()
        async with db.execute("SELECT record FROM runs WHERE status IN ('queued', 'running') "
                              "AND updated_at < ? ORDER BY created_at", (_at(before),)) as cur:
            return [RunRecord.model_validate_json(row[0]) for row in await cur.fetchall()]

    async def claim_idempotency_key(self, key: str, request_hash: str,
                                    execution_id: str) -> tuple[str, str] | None:
        db = await self._db()
        cursor = await db.execute("INSERT OR IGNORE INTO idempotency_keys VALUES (?, ?, ?, ?)",
                                  (key, request_hash, execution_id, _at(datetime.now(UTC))))
        await db.commit()
        if cursor.rowcount:
            return None
        async with db.execute("SELECT request_hash, execution_id FROM idempotency_keys "
                              "WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return (row[0], row[1]) if row else None

    async def delete_runs_before(self, cutoff: datetime) -> int:
        db = await self._db()
        async with db.execute("SELECT execution_id FROM runs WHERE created_at < ?",
                              (_at(cutoff),)) as cursor:
            ids = [row[0] for row in await cursor.fetchall()]
        for table, column in (("run_events", "execution_id"), ("runs", "execution_id"),
                              ("idempotency_keys", "execution_id"),
                              ("checkpoints", "thread_id"), ("writes", "thread_id")):
            try:
                await db.executemany(f"DELETE FROM {table} WHERE {column} = ?",
                                     [(i,) for i in ids])
            except aiosqlite.OperationalError:  # no checkpoint tables before the first run
                continue
        await db.commit()
        return len(ids)

    @asynccontextmanager
    async def checkpointer(self) -> AsyncIterator[GroupCommitSqliteSaver]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        async with GroupCommitSqliteSaver.open(str(self.path)) as saver:
            yield saver


async def _migrate(conn: aiosqlite.Connection) -> None:
    """Columns added after a store file was first made."""
    async with conn.execute("PRAGMA table_info(runs)") as cursor:
        columns = {row[1] for row in await cursor.fetchall()}
    if columns and "updated_at" not in columns:
        await conn.execute("ALTER TABLE runs ADD COLUMN updated_at TEXT")


def _workflow(row: Any) -> StoredWorkflow:
    return StoredWorkflow(row[0], row[1], json.loads(row[2]), datetime.fromisoformat(row[3]))
