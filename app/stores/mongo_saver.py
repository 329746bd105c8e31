"""langgraph-checkpoint-mongodb's MongoDBSaver, with a run owner's writes fenced.

A checkpoint or a task's writes of a run driven by an owner (its Lease in the config)
are written only while the run's stored `updated_at` is one the owner wrote: a read of
the run's document just before each write, on the same thread. MongoDB cannot make that
read and the write one atomic step without a transaction, and a transaction would hold
the run's document from the check to the commit: an owner stopped or killed in between
would block every claim of the run for up to `transactionLifetimeLimitSeconds` (60 s).
So an owner stalled exactly between its check and its write can land that one write
after a takeover; its next check fails, and it stops. SQLite has no such window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.mongodb import MongoDBSaver
from pymongo import MongoClient

from flowloom.app.stores.lease import lease_of


def mongo_time(value: datetime) -> datetime:
    """Naive UTC cut to milliseconds, as MongoDB keeps dates, so that cursors and filters
    compare exactly like stored values. A naive value (as PyMongo reads dates back) is UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class FencedMongoDBSaver(MongoDBSaver):
    def __init__(self, client: MongoClient[Any], *, db_name: str, runs_collection: str,
                 **kwargs: Any) -> None:
        super().__init__(client, db_name=db_name, **kwargs)
        self.runs = self.db[runs_collection]

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        self._hold(config)
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                   task_id: str, task_path: str = "") -> None:
        self._hold(config)
        super().put_writes(config, writes, task_id, task_path)

    def _hold(self, config: RunnableConfig) -> None:
        """Raise LeaseLost unless the config's lease (if any) still holds."""
        lease = lease_of(config)
        if lease is None:
            return
        before = lease.tokens
        doc = None if lease.lost else self.runs.find_one({"_id": lease.execution_id},
                                                          {"updated_at": 1})
        # The owner's record write may land while this read is out (this runs on a
        # thread of its own), and then the owner forgets the value it replaced: the
        # stored value is the owner's if it is among its tokens before or after.
        mine = {mongo_time(token) for token in (*before, *lease.tokens)}
        if doc is None or doc.get("updated_at") is None or (
                mongo_time(doc["updated_at"]) not in mine):
            raise lease.refused()
