"""AsyncSqliteSaver with group commit of task writes.

LangGraph saves each finished task's writes on its own (`aput_writes`), and the stock
saver commits each in its own transaction: a fan-out of 10,000 items means 10,000
commits queued one by one on aiosqlite's single thread. Here concurrent calls share one
transaction: a call returns only once its rows are committed, so durability is the same,
but one commit (and one fsync) serves every call that arrived while the last was running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

_INSERT = ("INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, "
           "channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_REPLACE = f"INSERT OR REPLACE {_INSERT}"
_IGNORE = f"INSERT OR IGNORE {_INSERT}"

_Pending = tuple[str, list[tuple[Any, ...]], "asyncio.Future[None]"]


class GroupCommitSqliteSaver(AsyncSqliteSaver):
    def __init__(self, conn: aiosqlite.Connection, **kwargs: Any) -> None:
        super().__init__(conn, **kwargs)
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        conf = config["configurable"]
        query = _REPLACE if all(w[0] in WRITES_IDX_MAP for w in writes) else _IGNORE
        rows = [(str(conf["thread_id"]), str(conf["checkpoint_ns"]), str(conf["checkpoint_id"]),
                 task_id, task_path, WRITES_IDX_MAP.get(channel, idx), channel,
                 *self.serde.dumps_typed(value))
                for idx, (channel, value) in enumerate(writes)]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((query, rows, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        await self.setup()
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self.lock:
                    explicit = self.conn.isolation_level is None  # an autocommit connection
                    if explicit:
                        await self.conn.execute("BEGIN")
                    try:
                        for query, rows, _ in batch:
                            await self.conn.executemany(query, rows)
                    except BaseException:
                        if explicit:
                            await self.conn.execute("ROLLBACK")
                        raise
                    await self.conn.execute("COMMIT") if explicit else await self.conn.commit()
            except BaseException as exc:  # every waiter learns of the failure
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)

    @staticmethod
    async def tune(conn: aiosqlite.Connection) -> None:
        # WAL with synchronous=NORMAL: a commit survives the process being killed (what
        # resume is for); only an OS crash or power cut can lose the last commits.
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str) -> AsyncIterator[GroupCommitSqliteSaver]:
        async with aiosqlite.connect(path) as conn:
            await cls.tune(conn)
            yield cls(conn)
