"""The embedded store: one SQLite file for workflows, run records, event logs and
checkpoints. Nothing to run beside the process."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowloom.app.records import FINISHED, RunRecord
from flowloom.app.stores.base import (
    RunPage,
    RunQuery,
    StoredWorkflow,
    decode_cursor,
    encode_cursor,
    json_text,
    same_document,
)
from flowloom.app.stores.errors import LeaseLost, StoreError
from flowloom.app.stores.sqlite_db import SqliteDb, at_text
from flowloom.app.stores.sqlite_saver import InlineSqliteSaver
from flowloom.graphs.events import WireEvent

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
CREATE INDEX IF NOT EXISTS idempotency_keys_by_run ON idempotency_keys (execution_id);
CREATE TABLE IF NOT EXISTS run_events (
    execution_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq));
"""


RETENTION_BATCH = 200  # runs deleted per transaction: each batch holds the loop briefly


def _like(text: str) -> str:
    """`text` as a LIKE pattern that matches only itself (LIKE ignores ASCII case)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db_: SqliteDb | None = None
        self._saver: InlineSqliteSaver | None = None

    async def _db(self) -> SqliteDb:
        if self._db_ is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot open the SQLite store at {self.path}: {exc}") from None
            db = await SqliteDb.open(self.path)
            try:
                await db.call(lambda conn: conn.executescript(_SCHEMA))
            except BaseException:
                db.close()
                raise
            if self._db_ is not None:  # another caller opened it while this one waited
                db.close()
            else:
                self._db_ = db
        return self._db_

    async def close(self) -> None:
        self._saver = None
        if self._db_ is not None:
            self._db_.close()
            self._db_ = None

    # --- workflows -----------------------------------------------------------------

    async def put_workflow(self, workflow_id: str, document: dict[str, Any],
                           *, new_version: bool = False) -> StoredWorkflow:
        # No per-process cache of the latest version: another process on the same file
        # may have deleted the workflow or added a version since.
        db = await self._db()
        return await db.write(lambda conn: _put_workflow(conn, workflow_id, document,
                                                         new_version))

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
        row = await db.first(sql, args)
        return _workflow(row) if row else None

    async def list_workflows(self, *, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        db = await self._db()
        sql = ("SELECT w.* FROM workflows w JOIN (SELECT id, MAX(version) AS v FROM workflows "
               "WHERE deleted = 0 GROUP BY id) latest ON w.id = latest.id AND w.version = "
               "latest.v ORDER BY w.id LIMIT ? OFFSET ?")
        return [_workflow(row) for row in await db.fetchall(sql, (limit, offset))]

    async def delete_workflow(self, workflow_id: str) -> bool:
        # Versions stay, marked deleted, so the run history can still show what ran.
        db = await self._db()
        changed = await db.execute("UPDATE workflows SET deleted = 1 "
                                   "WHERE id = ? AND deleted = 0", (workflow_id,))
        return changed > 0

    # --- runs ----------------------------------------------------------------------

    async def save_run(self, record: RunRecord) -> None:
        db = await self._db()
        row = _run_row(record)
        await db.execute(_SAVE_RUN, row)

    async def create_run(self, record: RunRecord) -> bool:
        db = await self._db()
        return await db.execute(_CREATE_RUN, _run_row(record)) == 1

    async def save_run_with_events(self, record: RunRecord, events: Sequence[Mapping[str, Any]],
                                   fence: Sequence[datetime] | None = None) -> None:
        """The record and its new events in one transaction (one commit per flush)."""
        db = await self._db()
        row, event_rows = _run_row(record), _event_rows(record.execution_id, events)
        tokens = [at_text(token) for token in fence or ()]
        save_fenced = _SAVE_FENCED.format(", ".join("?" * len(tokens)))

        def write(conn: sqlite3.Connection) -> None:
            if fence and not conn.execute(save_fenced,
                                          (row[3], row[5], row[6], row[0], *tokens)).rowcount:
                raise LeaseLost(f"run {record.execution_id} was taken over by another "
                                "process")  # in its savepoint: nothing of it is written
            conn.executemany(_APPEND_EVENT, event_rows)
            if not fence:
                conn.execute(_SAVE_RUN, row)

        await db.write(write)

    async def get_run(self, execution_id: str) -> RunRecord | None:
        db = await self._db()
        row = await db.first("SELECT record FROM runs WHERE execution_id = ?", (execution_id,))
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
            args.append(at_text(query.since))
        if query.until is not None:
            where.append("created_at < ?")
            args.append(at_text(query.until))
        if query.error:
            where.append("EXISTS (SELECT 1 FROM json_each(record, '$.errors') "
                         "WHERE json_extract(value, '$.message') LIKE ? ESCAPE '\\')")
            args.append(f"%{_like(query.error)}%")
        if query.cursor:
            at, execution_id = decode_cursor(query.cursor)
            where.append("(created_at, execution_id) < (?, ?)")
            args += [at_text(at), execution_id]
        sql = "SELECT record FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, execution_id DESC LIMIT ?"
        rows = await db.fetchall(sql, (*args, query.limit + 1))
        runs = [RunRecord.model_validate_json(r[0]) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        last = runs[-1] if runs else None
        return RunPage(runs, encode_cursor(last.created_at, last.execution_id)
                       if more and last else None)

    async def append_events(self, execution_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        if events:
            db = await self._db()
            await db.executemany(_APPEND_EVENT, _event_rows(execution_id, events))

    async def list_events(self, execution_id: str, after: int = 0) -> list[WireEvent]:
        db = await self._db()
        rows = await db.fetchall("SELECT event FROM run_events WHERE execution_id = ? "
                                 "AND seq > ? ORDER BY seq", (execution_id, after))
        return [json.loads(row[0]) for row in rows]

    async def request_cancel(self, execution_id: str, by: str) -> None:
        db = await self._db()
        await db.execute("UPDATE runs SET cancel_requested_by = ? WHERE execution_id = ?",
                         (by, execution_id))

    async def cancel_requested(self, execution_id: str) -> str | None:
        db = await self._db()
        row = await db.first("SELECT cancel_requested_by FROM runs WHERE execution_id = ?",
                             (execution_id,))
        return row[0] if row else None

    async def count_descendants(self, execution_id: str) -> int:
        db = await self._db()
        # A range on the primary key ('/' sorts right after '.'): LIKE would scan the table.
        row = await db.first("SELECT count(*) FROM runs WHERE execution_id >= ? "
                             "AND execution_id < ?", (f"{execution_id}.", f"{execution_id}/"))
        return int(row[0]) if row else 0

    async def stale_runs(self, before: datetime) -> list[RunRecord]:
        db = await self._db()
        rows = await db.fetchall("SELECT record FROM runs WHERE status IN ('queued', "
                                 "'running') AND updated_at < ? ORDER BY created_at",
                                 (at_text(before),))
        return [RunRecord.model_validate_json(row[0]) for row in rows]

    async def claim_run(self, execution_id: str, seen_status: str,
                        seen_updated_at: datetime) -> bool:
        db = await self._db()
        # Later than what was seen even within the same microsecond, so that a second
        # claimer from the same sighting never matches.
        seen = seen_updated_at if seen_updated_at.tzinfo else seen_updated_at.replace(tzinfo=UTC)
        claimed = max(datetime.now(UTC), seen + timedelta(microseconds=1))
        changed = await db.execute(
            "UPDATE runs SET status = 'running', updated_at = ?1, record = json_set(record, "
            "'$.status', 'running', '$.updated_at', ?1), cancel_requested_by = CASE WHEN "
            "?3 IN ('failed', 'waiting') THEN NULL ELSE cancel_requested_by END "
            "WHERE execution_id = ?2 AND status = ?3 AND updated_at = ?4 "
            "AND (?3 != 'queued' OR cancel_requested_by IS NULL)",
            (at_text(claimed), execution_id, seen_status, at_text(seen_updated_at)))
        return changed == 1

    async def save_run_if(self, record: RunRecord, seen_status: str,
                          seen_updated_at: datetime) -> bool:
        db = await self._db()
        row = _run_row(record)
        changed = await db.execute(
            "UPDATE runs SET status = ?, updated_at = ?, record = ? "
            "WHERE execution_id = ? AND status = ? AND updated_at = ?",
            (row[3], row[5], row[6], record.execution_id, seen_status, at_text(seen_updated_at)))
        return changed == 1

    async def claim_idempotency_key(self, key: str, request_hash: str,
                                    execution_id: str) -> tuple[str, str] | None:
        db = await self._db()

        def claim(conn: sqlite3.Connection) -> tuple[str, str] | None:
            if conn.execute("INSERT OR IGNORE INTO idempotency_keys VALUES (?, ?, ?, ?)",
                            (key, request_hash, execution_id,
                             at_text(datetime.now(UTC)))).rowcount:
                return None
            row = conn.execute("SELECT request_hash, execution_id FROM idempotency_keys "
                               "WHERE key = ?", (key,)).fetchone()
            return (row[0], row[1]) if row else None

        return await db.write(claim)

    async def delete_runs_before(self, cutoff: datetime) -> int:
        db = await self._db()
        ids = [row[0] for row in await db.fetchall(
            "SELECT execution_id FROM runs WHERE created_at < ? AND status IN (?, ?, ?)",
            (at_text(cutoff), *sorted(FINISHED)))]
        tables = {row[0] for row in await db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        for start in range(0, len(ids), RETENTION_BATCH):
            batch = [(execution_id,) for execution_id in ids[start:start + RETENTION_BATCH]]

            def delete(conn: sqlite3.Connection, batch: list[tuple[str]] = batch) -> None:
                for table, column in (("run_events", "execution_id"), ("runs", "execution_id"),
                                      ("idempotency_keys", "execution_id"),
                                      ("checkpoints", "thread_id"), ("writes", "thread_id")):
                    if table in tables:  # no checkpoint tables before a first run
                        conn.executemany(f"DELETE FROM {table} WHERE {column} = ?", batch)

            await db.write(delete)  # each run goes whole, with its events and checkpoints
            await asyncio.sleep(0)  # between batches, requests and heartbeats go on
        return len(ids)

    @asynccontextmanager
    async def checkpointer(self) -> AsyncIterator[InlineSqliteSaver]:
        """One saver, on the store's own connection, for every run of this process:
        SQLite takes one writer at a time, and group commit then batches the writes of
        concurrent runs."""
        if self._saver is None:
            self._saver = InlineSqliteSaver(await self._db())
        yield self._saver


_SAVE_RUN = ("INSERT INTO runs (execution_id, workflow_id, workflow_version, status, "
             "created_at, updated_at, record) VALUES (?, ?, ?, ?, ?, ?, ?) "
             "ON CONFLICT(execution_id) DO UPDATE SET status = excluded.status, "
             "updated_at = excluded.updated_at, record = excluded.record")
_CREATE_RUN = ("INSERT OR IGNORE INTO runs (execution_id, workflow_id, workflow_version, "
               "status, created_at, updated_at, record) VALUES (?, ?, ?, ?, ?, ?, ?)")
_SAVE_FENCED = ("UPDATE runs SET status = ?, updated_at = ?, record = ? "
                "WHERE execution_id = ? AND updated_at IN ({})")
_APPEND_EVENT = "INSERT OR IGNORE INTO run_events VALUES (?, ?, ?)"


def _run_row(record: RunRecord) -> tuple[Any, ...]:
    return (record.execution_id, record.workflow_id, record.workflow_version, record.status,
            at_text(record.created_at), at_text(record.updated_at or record.created_at),
            record.model_dump_json())


def _event_rows(execution_id: str, events: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return [(execution_id, e["seq"], json_text(e)) for e in events]


def _put_workflow(conn: sqlite3.Connection, workflow_id: str, document: dict[str, Any],
                  new_version: bool) -> StoredWorkflow:
    row = conn.execute("SELECT * FROM workflows WHERE id = ? ORDER BY version DESC LIMIT 1",
                       (workflow_id,)).fetchone()
    latest = _workflow(row) if row else None
    conn.execute("UPDATE workflows SET deleted = 0 WHERE id = ?", (workflow_id,))
    if latest is not None and not new_version and same_document(latest.document, document):
        return latest  # re-storing the latest version also undeletes it
    version = max(int(document.get("version") or 1), latest.version + 1 if latest else 1)
    stored = StoredWorkflow(workflow_id, version, {**document, "id": workflow_id,
                                                   "version": version}, datetime.now(UTC))
    conn.execute("INSERT INTO workflows VALUES (?, ?, ?, ?, 0)",
                 (workflow_id, version, json.dumps(stored.document), at_text(stored.created_at)))
    return stored


def _workflow(row: Any) -> StoredWorkflow:
    return StoredWorkflow(row[0], row[1], json.loads(row[2]), datetime.fromisoformat(row[3]))
