"""The embedded store: one SQLite file for workflows, run records and checkpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from app.records import RunRecord
from app.stores.base import StoredWorkflow
from app.stores.sqlite_saver import GroupCommitSqliteSaver
from graphs.errors import StoreError

_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT NOT NULL, version INTEGER NOT NULL, document TEXT NOT NULL,
    created_at TEXT NOT NULL, PRIMARY KEY (id, version));
CREATE TABLE IF NOT EXISTS runs (
    execution_id TEXT PRIMARY KEY, workflow_id TEXT, workflow_version INTEGER,
    status TEXT NOT NULL, created_at TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow_id, created_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at DESC);
"""


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def _db(self) -> aiosqlite.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = await aiosqlite.connect(self.path)
                await conn.executescript(_SCHEMA)
                await conn.commit()
            except (OSError, aiosqlite.Error) as exc:
                raise StoreError(f"cannot open the SQLite store at {self.path}: {exc}") from None
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def put_workflow(self, workflow_id: str, document: dict[str, Any]) -> StoredWorkflow:
        db = await self._db()
        latest = await self.get_workflow(workflow_id)
        body = {k: v for k, v in document.items() if k != "version"}
        if latest is not None and {k: v for k, v in latest.document.items()
                                   if k != "version"} == body:
            return latest
        version = max(int(document.get("version") or 1), latest.version + 1 if latest else 1)
        stored = StoredWorkflow(workflow_id, version, {**document, "id": workflow_id,
                                                       "version": version}, datetime.now(UTC))
        await db.execute("INSERT INTO workflows VALUES (?, ?, ?, ?)",
                         (workflow_id, version, json.dumps(stored.document),
                          stored.created_at.isoformat()))
        await db.commit()
        return stored

    async def get_workflow(self, workflow_id: str,
                           version: int | None = None) -> StoredWorkflow | None:
        db = await self._db()
        if version is None:
            sql = "SELECT * FROM workflows WHERE id = ? ORDER BY version DESC LIMIT 1"
            args: tuple[Any, ...] = (workflow_id,)
        else:
            sql, args = "SELECT * FROM workflows WHERE id = ? AND version = ?", (workflow_id,
                                                                                version)
        async with db.execute(sql, args) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return StoredWorkflow(row[0], row[1], json.loads(row[2]), datetime.fromisoformat(row[3]))

    async def save_run(self, record: RunRecord) -> None:
        db = await self._db()
        await db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(execution_id) DO UPDATE SET "
            "status = excluded.status, record = excluded.record",
            (record.execution_id, record.workflow_id, record.workflow_version, record.status,
             record.created_at.isoformat(), record.model_dump_json()))
        await db.commit()

    async def get_run(self, execution_id: str) -> RunRecord | None:
        db = await self._db()
        async with db.execute("SELECT record FROM runs WHERE execution_id = ?",
                              (execution_id,)) as cursor:
            row = await cursor.fetchone()
        return RunRecord.model_validate_json(row[0]) if row else None

    async def list_runs(self, *, workflow_id: str | None = None, status: str | None = None,
                        limit: int = 50) -> list[RunRecord]:
        db = await self._db()
        where, args = [], []
        if workflow_id is not None:
            where.append("workflow_id = ?")
            args.append(workflow_id)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT record FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        async with db.execute(sql, (*args, limit)) as cursor:
            rows = await cursor.fetchall()
        return [RunRecord.model_validate_json(r[0]) for r in rows]

    @asynccontextmanager
    async def checkpointer(self) -> AsyncIterator[GroupCommitSqliteSaver]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        async with GroupCommitSqliteSaver.open(str(self.path)) as saver:
            yield saver
