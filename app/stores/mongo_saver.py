"""langgraph-checkpoint-mongodb's MongoDBSaver, with a run owner's writes fenced.

MongoDB has no transaction that could check the run's lease and write a checkpoint as
one step without holding the run's document across the owner's stall (a stopped owner
would block every takeover for up to 60 s). So the fence is made of single-document
steps, none of which holds anything:

1. Every fenced write first takes a *slot*, from a block of SLOT_BLOCK handed to the
   owner by an `$inc` of the run document's `wseq`, conditional on the run's `epoch`
   being the owner's. Every claim increments `epoch` in its own single-document update,
   so no slot is ever handed to an owner after a claim that took the run from it.
2. A write is readable only through a document that holds its slot, under a unique
   (thread_id, slot) index: a checkpoint carries its own; a task's writes carry theirs
   as `batch`, and become readable when their commit marker (the slot's document in the
   writes collection) is inserted after them.
3. The claimer *seals* the run right after its claim (MongoStore.claim_run), and every
   owner checks it again before its first read: every slot up to `wseq` that holds no
   document gets a tombstone in both collections. From then on, every slot an older
   owner was handed is taken, so its late checkpoint or commit marker fails on the
   unique index (LeaseLost) and its late task writes stay unreadable.

So a stalled owner's write lands before the seal, where it counts as written before the
takeover (its slot was handed out under its lease), or is never read by anyone. The
argument is in docs/semantics.md, "Running in a service"; SQLite checks the lease inside
the write's own transaction instead (sqlite_saver.py).
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.mongodb import MongoDBSaver
from langgraph.checkpoint.mongodb.utils import (
    _validate_filter,
    _validate_identifier,
    dumps_metadata,
    loads_metadata,
)
from pymongo import ASCENDING, DESCENDING, InsertOne, MongoClient, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from flowloom.app.stores.lease import Lease, lease_of

FENCE_NS = "\x00fence"  # tombstones' namespace: no LangGraph read asks for it
COMMIT = "\x00commit"  # the task id of a write batch's commit marker
DUPLICATE = 11000
SLOT_BLOCK = 16  # slots per `$inc`: a write costs one round trip, the block's 1/16 more
_SLOT_INDEX = [("thread_id", ASCENDING), ("slot", ASCENDING)]
_UPSTREAM_WRITES_INDEX = [("thread_id", 1), ("checkpoint_ns", 1), ("checkpoint_id", -1),
                          ("task_id", 1), ("idx", 1)]


def mongo_time(value: datetime) -> datetime:
    """Naive UTC cut to milliseconds, as MongoDB keeps dates, so that cursors and filters
    compare exactly like stored values. A naive value (as PyMongo reads dates back) is UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class FencedMongoDBSaver(MongoDBSaver):
    def __init__(self, client: MongoClient[Any], *, db_name: str, runs_collection: str,
                 checkpoint_collection_name: str, writes_collection_name: str,
                 serde: Any) -> None:
        # Not MongoDBSaver's own: its unique index on task writes forbids the same
        # write in two batches (a stalled owner's, unread, and its successor's).
        BaseCheckpointSaver.__init__(self)
        self.client = client
        self.db = client[db_name]
        self.checkpoint_collection = self.db[checkpoint_collection_name]
        self.writes_collection = self.db[writes_collection_name]
        self.ttl = None
        self.serde = serde
        self.runs = self.db[runs_collection]
        self.binding = threading.Lock()
        # Called between a fenced write's slot and the write itself: tests stall here.
        self.between_slot_and_write: Callable[[str], None] | None = None
        self._indexes()

    def _indexes(self) -> None:
        self.checkpoint_collection.create_index(
            [("thread_id", ASCENDING), ("checkpoint_ns", ASCENDING),
             ("checkpoint_id", DESCENDING)], unique=True)
        for name, index in self.writes_collection.index_information().items():
            if list(index["key"]) == _UPSTREAM_WRITES_INDEX and index.get("unique"):
                self.writes_collection.drop_index(name)
        self.writes_collection.create_index(
            [*_UPSTREAM_WRITES_INDEX, ("batch", ASCENDING)], unique=True, name="task_writes")
        for collection in (self.checkpoint_collection, self.writes_collection):
            collection.create_index(_SLOT_INDEX, unique=True, name="fence_slot",
                                    partialFilterExpression={"slot": {"$exists": True}})

    # --- the fence -------------------------------------------------------------------

    def _bind(self, lease: Lease) -> int | None:
        """The owner's epoch, learnt once, sealing the run first (before any read)."""
        if lease.lost:
            raise lease.refused()
        with self.binding:  # one seal per owner: a second could tombstone our own slots
            if not lease.bound:
                before = lease.tokens
                doc = self.runs.find_one({"_id": lease.execution_id},
                                         {"updated_at": 1, "epoch": 1, "wseq": 1, "sealed": 1})
                # The owner's record write may land while this read is out (this runs on
                # a thread of its own), and then the owner forgets the value it replaced:
                # the stored value is the owner's if it is among its tokens before or after.
                mine = {mongo_time(token) for token in (*before, *lease.tokens)}
                if doc is None or doc.get("updated_at") is None or (
                        mongo_time(doc["updated_at"]) not in mine):
                    raise lease.refused()
                # That read saw the run as this owner's, so its epoch is this owner's: a
                # claim moves `updated_at` and `epoch` in one update.
                self._seal(lease, doc.get("epoch"), doc.get("sealed") or 0,
                           doc.get("wseq") or 0)
                lease.epoch, lease.bound = doc.get("epoch"), True
        return lease.epoch

    def _seal(self, lease: Lease, epoch: int | None, sealed: int, last: int) -> None:
        """Take every slot up to `last` that no write has landed in yet."""
        if last <= sealed:
            return
        collections = (self.checkpoint_collection, self.writes_collection)
        queries = landed_queries(lease.execution_id, sealed, last)
        pairs = list(zip(collections, queries, strict=True))
        if sum(c.count_documents(q) for c, q in pairs) < last - sealed:
            used = {d["slot"] for c, q in pairs for d in c.find(q, {"slot": 1})}
            for collection in collections:
                _insert_ignoring_duplicates(
                    collection, tombstones(lease.execution_id, sealed, last, used))
        if not self.runs.update_one({"_id": lease.execution_id, "epoch": epoch},
                                    {"$max": {"sealed": last}}).matched_count:
            raise lease.refused()

    def _slot(self, lease: Lease) -> int:
        epoch = self._bind(lease)
        with self.binding:
            slot = lease.free.pop(0) if lease.free else None
        if slot is None:
            doc = self.runs.find_one_and_update(
                {"_id": lease.execution_id, "epoch": epoch}, {"$inc": {"wseq": SLOT_BLOCK}},
                projection={"wseq": 1}, return_document=ReturnDocument.AFTER)
            if doc is None:  # claimed by another process since this owner's
                raise lease.refused()
            slot = int(doc["wseq"]) - SLOT_BLOCK + 1
            with self.binding:
                lease.free.extend(range(slot + 1, slot + SLOT_BLOCK))
        if self.between_slot_and_write is not None:
            self.between_slot_and_write(lease.execution_id)
        return slot

    # --- writes ----------------------------------------------------------------------

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        lease = lease_of(config)
        if lease is None:
            return super().put(config, checkpoint, metadata, new_versions)
        conf = config["configurable"]
        thread_id = _validate_identifier(conf["thread_id"], "thread_id")
        checkpoint_ns = _validate_identifier(conf["checkpoint_ns"], "checkpoint_ns")
        checkpoint_id = _validate_identifier(checkpoint["id"], "checkpoint id")
        parent = _validate_identifier(conf.get("checkpoint_id"), "checkpoint_id", optional=True)
        type_, blob = self.serde.dumps_typed(checkpoint)
        doc = {"parent_checkpoint_id": parent, "type": type_, "checkpoint": blob,
               "metadata": dumps_metadata(self.serde, get_checkpoint_metadata(config, metadata)),
               "slot": self._slot(lease)}
        try:
            self.checkpoint_collection.update_one(
                {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                 "checkpoint_id": checkpoint_id}, {"$set": doc}, upsert=True)
        except DuplicateKeyError:  # its slot was sealed by the run's next owner
            raise lease.refused() from None
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                                 "checkpoint_id": checkpoint_id}}

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                   task_id: str, task_path: str = "") -> None:
        conf = config["configurable"]
        where = {"thread_id": _validate_identifier(conf["thread_id"], "thread_id"),
                 "checkpoint_ns": _validate_identifier(conf["checkpoint_ns"], "checkpoint_ns"),
                 "checkpoint_id": _validate_identifier(conf["checkpoint_id"], "checkpoint_id")}
        _validate_identifier(task_id, "task_id")
        _validate_identifier(task_path, "task_path")
        lease = lease_of(config)
        if lease is not None:
            return self._put_batch(lease, where, writes, task_id, task_path)
        # MongoDBSaver's rule within a batch: replace only a task's error and the like.
        how = "$set" if all(w[0] in WRITES_IDX_MAP for w in writes) else "$setOnInsert"
        ops: list[Any] = []
        for idx, (channel, value) in enumerate(writes):
            type_, blob = self.serde.dumps_typed(value)
            ops.append(UpdateOne({**where, "task_id": task_id, "task_path": task_path,
                                  "idx": WRITES_IDX_MAP.get(channel, idx), "batch": None},
                                 {how: {"channel": channel, "type": type_, "value": blob}},
                                 upsert=True))
        self.writes_collection.bulk_write(ops, ordered=True)

    def _put_batch(self, lease: Lease, where: dict[str, Any],
                   writes: Sequence[tuple[str, Any]], task_id: str, task_path: str) -> None:
        """A fenced call's writes, then its commit marker, in one ordered insert (one
        request): its slot is new, so nothing of it is stored yet, and upserts would only
        cost a look-up each (and a second request, for the marker)."""
        batch = self._slot(lease)
        # MongoDBSaver's rule within a call: a later write to a task's error (and the
        # like) replaces the earlier; otherwise the first write of an index stays.
        replace = all(w[0] in WRITES_IDX_MAP for w in writes)
        docs: dict[int, dict[str, Any]] = {}
        for idx, (channel, value) in enumerate(writes):
            key = WRITES_IDX_MAP.get(channel, idx)
            if key in docs and not replace:
                continue
            type_, blob = self.serde.dumps_typed(value)
            docs[key] = {**where, "task_id": task_id, "task_path": task_path, "idx": key,
                         "batch": batch, "channel": channel, "type": type_, "value": blob}
        # Last, and in order: the batch is readable only once all of it landed.
        marker = {**where, "task_id": COMMIT, "task_path": "", "idx": batch, "slot": batch}
        try:
            self.writes_collection.bulk_write([InsertOne(d) for d in (*docs.values(), marker)],
                                              ordered=True)
        except BulkWriteError as exc:
            if any(e.get("code") == DUPLICATE and e.get("index") == len(docs)
                   for e in exc.details.get("writeErrors", [])):
                raise lease.refused() from None  # sealed: what landed is never read
            raise

    # --- reads -----------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        lease = lease_of(config)
        if lease is not None:
            self._bind(lease)
        conf = config["configurable"]
        query = {"thread_id": _validate_identifier(conf["thread_id"], "thread_id"),
                 "checkpoint_ns": _validate_identifier(conf.get("checkpoint_ns", ""),
                                                       "checkpoint_ns")}
        checkpoint_id = _validate_identifier(get_checkpoint_id(config), "checkpoint_id",
                                             optional=True)
        if checkpoint_id:
            query["checkpoint_id"] = checkpoint_id
        for doc in self.checkpoint_collection.find(query, sort=[("checkpoint_id", -1)],
                                                   limit=1):
            return self._tuple(doc)
        return None

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None,
             limit: int | None = None) -> Iterator[CheckpointTuple]:
        query: dict[str, Any] = {"checkpoint_ns": {"$ne": FENCE_NS}}
        conf = (config or {}).get("configurable", {})
        lease = lease_of(config) if config is not None else None
        if lease is not None:
            self._bind(lease)
        if "thread_id" in conf:
            query["thread_id"] = _validate_identifier(conf["thread_id"], "thread_id")
        if "checkpoint_ns" in conf:
            query["checkpoint_ns"] = _validate_identifier(conf["checkpoint_ns"],
                                                          "checkpoint_ns")
        if filter:
            _validate_filter(filter)
            for key, value in filter.items():
                query[f"metadata.{key}"] = dumps_metadata(self.serde, value)
        if before is not None:
            query["checkpoint_id"] = {"$lt": _validate_identifier(
                before["configurable"]["checkpoint_id"], "before checkpoint_id")}
        for doc in self.checkpoint_collection.find(query, limit=limit or 0,
                                                   sort=[("checkpoint_id", -1)]):
            yield self._tuple(doc)

    def _tuple(self, doc: dict[str, Any]) -> CheckpointTuple:
        where = {"thread_id": doc["thread_id"], "checkpoint_ns": doc["checkpoint_ns"]}
        parent = doc.get("parent_checkpoint_id")
        return CheckpointTuple(
            {"configurable": {**where, "checkpoint_id": doc["checkpoint_id"]}},
            self.serde.loads_typed((doc["type"], doc["checkpoint"])),
            loads_metadata(self.serde, doc["metadata"]),
            {"configurable": {**where, "checkpoint_id": parent}} if parent else None,
            self._pending({**where, "checkpoint_id": doc["checkpoint_id"]}))

    def _pending(self, where: dict[str, Any]) -> builtins.list[tuple[str, str, Any]]:
        """The task writes of one checkpoint that a reader may see: those of committed
        batches (and unfenced ones), one per task and index, as MongoDBSaver keeps them:
        the first write stays, but a later error, interrupt or resume replaces one."""
        docs = builtins.list(self.writes_collection.find(where))
        committed = {d["slot"] for d in docs if d.get("task_id") == COMMIT}
        chosen: dict[tuple[str, int], dict[str, Any]] = {}
        for doc in docs:
            batch = doc.get("batch")
            if doc.get("task_id") == COMMIT or (batch is not None and batch not in committed):
                continue
            key = (doc["task_id"], doc["idx"])
            kept = chosen.get(key)
            if kept is None or (_order(doc) > _order(kept)) == (doc["channel"] in WRITES_IDX_MAP):
                chosen[key] = doc
        kept_ids = {id(doc) for doc in chosen.values()}
        return [(d["task_id"], d["channel"], self.serde.loads_typed((d["type"], d["value"])))
                for d in docs if id(d) in kept_ids]


def landed_queries(thread: str, sealed: int, last: int) -> tuple[dict[str, Any], ...]:
    """The documents of slots after `sealed` up to `last` that writes left: checkpoints,
    and the commit markers of task writes (one per slot in all, tombstones aside)."""
    span = {"$gt": sealed, "$lte": last}
    return ({"thread_id": thread, "slot": span, "checkpoint_ns": {"$ne": FENCE_NS}},
            {"thread_id": thread, "slot": span, "task_id": COMMIT})


def tombstones(thread: str, sealed: int, last: int, used: set[int]) -> list[dict[str, Any]]:
    return [_tombstone(thread, n) for n in range(sealed + 1, last + 1) if n not in used]


def _order(doc: dict[str, Any]) -> int:
    return doc.get("batch") or 0  # an unfenced write is the oldest


def _tombstone(thread: str, slot: int) -> dict[str, Any]:
    """Takes `slot` in either collection; no LangGraph query reaches its namespace."""
    return {"thread_id": thread, "checkpoint_ns": FENCE_NS, "checkpoint_id": f"{slot:020d}",
            "task_id": "", "idx": slot, "slot": slot}


def duplicates_only(exc: BulkWriteError) -> bool:
    return all(e.get("code") == DUPLICATE for e in exc.details.get("writeErrors", []))


def _insert_ignoring_duplicates(collection: Any, docs: list[dict[str, Any]]) -> None:
    """Insert what is not there yet: a slot already taken stays as it is."""
    if not docs:
        return
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if not duplicates_only(exc):
            raise
