"""LangGraph's SqliteSaver, driven inline from the event loop, with group commit.

The stock AsyncSqliteSaver sends every statement through aiosqlite's thread; here the
sync SqliteSaver's own queries run on the loop's thread (see sqlite_db.py for why), so
the table layout, queries and serialization stay LangGraph's.

Checkpoints (`aput`) and each finished task's writes (`aput_writes`) go through the
connection's group commit: what arrives in the same loop iteration, from every run in
flight, shares one transaction, so a fan-out of 10,000 items is not 10,000 commits. A
call returns only once its rows are committed: durability is that of one commit each.

A write of a run driven by an owner (its Lease in the config) is fenced: it lands only
if the run's `updated_at` is still one the owner wrote, checked in the same transaction.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.sqlite import SqliteSaver

from flowloom.app.stores.lease import lease_of
from flowloom.app.stores.serde import CheckpointSerializer
from flowloom.app.stores.sqlite_db import SqliteDb, at_text

_INSERT = ("INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, "
           "channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_REPLACE = f"INSERT OR REPLACE {_INSERT}"
_PUT_CHECKPOINT = ("INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
                   "parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)")
_IGNORE = f"INSERT OR IGNORE {_INSERT}"
_LEASE = "SELECT updated_at FROM runs WHERE execution_id = ?"


class InlineSqliteSaver(SqliteSaver):
    def __init__(self, db: SqliteDb, **kwargs: Any) -> None:
        kwargs.setdefault("serde", CheckpointSerializer())
        super().__init__(db.conn, **kwargs)
        self.db = db

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str) -> AsyncIterator[InlineSqliteSaver]:
        """A saver on its own connection (the store shares its connection instead)."""
        db = await SqliteDb.open(path)
        try:
            yield cls(db)
        finally:
            db.close()

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        # The parent commits even after an error and guards with a thread lock; here a
        # write is BEGIN IMMEDIATE .. COMMIT or rolled back, and the loop is the guard.
        self.setup()
        cur = self.conn.cursor()
        try:
            if transaction:
                cur.execute("BEGIN IMMEDIATE")
            yield cur
            if transaction:
                cur.execute("COMMIT")
        except BaseException:
            if transaction and self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.db.call(lambda _: self.get_tuple(config))

    async def alist(self, config: RunnableConfig | None, *,
                    filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None,
                    limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        found = await self.db.call(lambda _: list(
            self.list(config, filter=filter, before=before, limit=limit)))
        for item in found:
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata, new_versions: ChannelVersions
                   ) -> RunnableConfig:
        # SqliteSaver.put's row, written in the shared transaction instead of its own.
        conf = config["configurable"]
        thread_id, checkpoint_ns = str(conf["thread_id"]), conf["checkpoint_ns"]
        type_, blob = self.serde.dumps_typed(checkpoint)
        meta = json.dumps(get_checkpoint_metadata(config, metadata),
                          ensure_ascii=False).encode("utf-8", "ignore")
        row = (thread_id, checkpoint_ns, checkpoint["id"], conf.get("checkpoint_id"), type_,
               blob, meta)
        await self._setup()
        await self.db.write(_fenced(config, lambda conn: conn.execute(_PUT_CHECKPOINT, row)))
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                                 "checkpoint_id": checkpoint["id"]}}

    async def adelete_thread(self, thread_id: str) -> None:
        await self.db.call(lambda _: self.delete_thread(thread_id))

    async def aget_delta_channel_history(self, *, config: RunnableConfig,
                                         channels: Sequence[str]) -> Mapping[str, Any]:
        return await self.db.call(lambda _: self.get_delta_channel_history(
            config=config, channels=channels))

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        conf = config["configurable"]
        query = _REPLACE if all(w[0] in WRITES_IDX_MAP for w in writes) else _IGNORE
        rows = [(str(conf["thread_id"]), str(conf["checkpoint_ns"]), str(conf["checkpoint_id"]),
                 task_id, task_path, WRITES_IDX_MAP.get(channel, idx), channel,
                 *self.serde.dumps_typed(value))
                for idx, (channel, value) in enumerate(writes)]
        await self._setup()
        await self.db.write(_fenced(config, lambda conn: conn.executemany(query, rows)))

    async def _setup(self) -> None:
        if not self.is_setup:  # its script commits: never inside the shared transaction
            await self.db.call(lambda _: self.setup())


def _fenced(config: RunnableConfig, write: Callable[[sqlite3.Connection], Any]
            ) -> Callable[[sqlite3.Connection], Any]:
    """`write`, done only while the run's owner holds its lease: checked in the write's
    own savepoint, under the write lock, so no claim can come between the check and the
    write. A refused write is rolled back alone and raises LeaseLost."""
    lease = lease_of(config)
    if lease is None:
        return write

    def fenced(conn: sqlite3.Connection) -> Any:
        row = conn.execute(_LEASE, (lease.execution_id,)).fetchone()
        if lease.lost or row is None or row[0] not in _as_text(lease.tokens):
            raise lease.refused()
        return write(conn)

    return fenced


@functools.lru_cache(maxsize=1024)
def _as_text(tokens: tuple[datetime, ...]) -> frozenset[str]:
    """Tokens as the runs table keeps them; a run's tokens change once per record write,
    its checkpoint writes come several times as often."""
    return frozenset(at_text(token) for token in tokens)
