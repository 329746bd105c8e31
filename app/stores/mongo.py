"""The production store: MongoDB through PyMongo's async client (motor's successor), and
langgraph-checkpoint-mongodb's MongoDBSaver for checkpoints in the same database."""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, MongoClient, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from flowloom.app.records import FINISHED, RunRecord
from flowloom.app.stores.base import (
    RunPage,
    RunQuery,
    StoredWorkflow,
    decode_cursor,
    encode_cursor,
    same_document,
)
from flowloom.app.stores.errors import StoreError
from flowloom.app.stores.mongo_events import OUTBOX, EventLog, copy_events, event_docs
from flowloom.app.stores.mongo_saver import (
    FencedMongoDBSaver,
    duplicates_only,
    landed_queries,
    tombstones,
)
from flowloom.app.stores.mongo_saver import mongo_time as _ms
from flowloom.app.stores.serde import CheckpointSerializer
from flowloom.graphs.events import WireEvent

CHECKPOINTS, WRITES = "checkpoints", "checkpoint_writes"
RETENTION_BATCH = 200  # runs deleted per round of requests


def _database_name(url: str) -> str:
    path = url.split("://", 1)[-1].split("/", 1)
    name = path[1].split("?", 1)[0] if len(path) > 1 else ""
    return name or "flowloom"


class MongoStore:
    def __init__(self, url: str, *, client: Any = None,
                 sync_client_factory: Callable[[], Any] | None = None) -> None:
        self.url = url
        self.db_name = _database_name(url)
        self.client = client if client is not None else AsyncMongoClient(url, tz_aware=True)
        self.db = self.client[self.db_name]
        self._sync_client_factory = sync_client_factory or (
            lambda: MongoClient(url, tz_aware=True))
        self._ready = False
        self._saver: FencedMongoDBSaver | None = None
        self._saver_client: Any = None
        self.events = EventLog()  # the event log's outbox (mongo_events.py)

    async def _setup(self) -> Any:
        if self._ready:
            return self.db
        try:
            await self.db.workflows.create_index([("id", ASCENDING), ("version", DESCENDING)],
                                                 unique=True)
            for keys in ([("workflow_id", ASCENDING)], [("status", ASCENDING)], []):
                await self.db.runs.create_index(
                    [*keys, ("created_at", DESCENDING), ("_id", DESCENDING)])
            await self.db.run_events.create_index([("execution_id", ASCENDING),
                                                   ("seq", ASCENDING)], unique=True)
            for name in ("runs", "run_events", CHECKPOINTS, WRITES):
                await self._drop_ttl_indexes(name)
        except PyMongoError as exc:
            raise StoreError(f"cannot prepare the MongoDB store at {self.url}: {exc}") from None
        self._ready = True
        return self.db

    async def _drop_ttl_indexes(self, collection: str) -> None:
        """A TTL index deletes by age whatever the run's status, checkpoints of a run
        waiting for approval included: retention is `delete_runs_before` alone, and the
        TTL indexes of earlier versions go."""
        for name, index in (await self.db[collection].index_information()).items():
            if "expireAfterSeconds" in index:
                await self.db[collection].drop_index(name)

    async def close(self) -> None:
        if self._saver_client is not None:
            self._saver_client.close()
            self._saver_client = self._saver = None
        await self.client.close()

    # --- workflows -----------------------------------------------------------------

    async def put_workflow(self, workflow_id: str, document: dict[str, Any],
                           *, new_version: bool = False) -> StoredWorkflow:
        db = await self._setup()
        latest = await self.get_workflow(workflow_id, include_deleted=True)
        if latest is not None and not new_version and same_document(latest.document, document):
            await db.workflows.update_many({"id": workflow_id}, {"$set": {"deleted": False}})
            return latest
        version = max(int(document.get("version") or 1), latest.version + 1 if latest else 1)
        stored = StoredWorkflow(workflow_id, version, {**document, "id": workflow_id,
                                                       "version": version},
                                 _ms(datetime.now(UTC)).replace(tzinfo=UTC))
        await db.workflows.update_many({"id": workflow_id}, {"$set": {"deleted": False}})
        try:
            await db.workflows.insert_one({"id": workflow_id, "version": version,
                                           "document": stored.document, "deleted": False,
                                           "created_at": stored.created_at})
        except DuplicateKeyError:  # another writer stored this version first: use theirs
            again = await self.get_workflow(workflow_id, version)
            if again is None:
                raise
            return again
        return stored

    async def get_workflow(self, workflow_id: str, version: int | None = None, *,
                           include_deleted: bool = False) -> StoredWorkflow | None:
        db = await self._setup()
        query: dict[str, Any] = {"id": workflow_id}
        if version is not None:
            query["version"] = version
        if not include_deleted:
            query["deleted"] = False
        docs = await db.workflows.find(query).sort("version", DESCENDING).limit(1).to_list(1)
        return _workflow(docs[0]) if docs else None

    async def list_workflows(self, *, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        db = await self._setup()
        cursor = await db.workflows.aggregate([
            {"$match": {"deleted": False}}, {"$sort": {"id": 1, "version": -1}},
            {"$group": {"_id": "$id", "latest": {"$first": "$$ROOT"}}},
            {"$sort": {"_id": 1}}, {"$skip": offset}, {"$limit": limit}])
        return [_workflow(d["latest"]) for d in await cursor.to_list(None)]

    async def delete_workflow(self, workflow_id: str) -> bool:
        db = await self._setup()
        result = await db.workflows.update_many({"id": workflow_id, "deleted": False},
                                                {"$set": {"deleted": True}})
        return bool(result.modified_count)

    # --- runs ----------------------------------------------------------------------

    async def save_run(self, record: RunRecord) -> None:
        db = await self._setup()
        await db.runs.update_one(
            {"_id": record.execution_id},
            {"$set": _fields(record),
             "$setOnInsert": {"workflow_id": record.workflow_id,
                              "created_at": _ms(record.created_at)}},
            upsert=True)

    async def create_run(self, record: RunRecord) -> bool:
        db = await self._setup()
        try:
            await db.runs.insert_one({
                "_id": record.execution_id, **_fields(record), "workflow_id": record.workflow_id,
                "created_at": _ms(record.created_at)})
        except DuplicateKeyError:
            return False
        return True

    async def get_run(self, execution_id: str) -> RunRecord | None:
        db = await self._setup()
        doc = await db.runs.find_one({"_id": execution_id}, {OUTBOX: 0})
        return _run(doc) if doc else None

    async def list_runs(self, query: RunQuery) -> RunPage:
        db = await self._setup()
        where: dict[str, Any] = {}
        if query.workflow_id is not None:
            where["workflow_id"] = query.workflow_id
        if query.status is not None:
            where["status"] = query.status
        span: dict[str, Any] = {}
        if query.since is not None:
            span["$gte"] = _ms(query.since)
        if query.until is not None:
            span["$lt"] = _ms(query.until)
        if span:
            where["created_at"] = span
        if query.error:
            where["errors"] = {"$regex": re.escape(query.error), "$options": "i"}
        if query.cursor:
            at, execution_id = decode_cursor(query.cursor)
            at = _ms(at)
            where = {"$and": [where, {"$or": [{"created_at": {"$lt": at}},
                                              {"created_at": at, "_id": {"$lt": execution_id}}]}]}
        docs = await db.runs.find(where, {OUTBOX: 0}).sort(
            [("created_at", DESCENDING), ("_id", DESCENDING)]).limit(query.limit + 1).to_list(
            query.limit + 1)
        runs = [_run(d) for d in docs[: query.limit]]
        last = docs[query.limit - 1] if len(docs) > query.limit else None
        return RunPage(runs, encode_cursor(last["created_at"], last["_id"]) if last else None)

    async def save_run_with_events(self, record: RunRecord, events: Sequence[Mapping[str, Any]],
                                   fence: Sequence[datetime] | None = None) -> None:
        if not fence:
            # No owner, so nothing to fence (a graph run outside the lifecycle, a run
            # being created): events first, so a reader that sees the record's progress
            # finds its events too. No outbox: it would cost a request for nothing, and
            # readers merge both.
            await self.append_events(record.execution_id, events)
            await self.save_run(record)
            return
        # Fenced: the events are committed by the record's own conditional update (the
        # outbox), so a process that lost the run commits nothing, events included.
        db = await self._setup()
        await self.events.commit(db, record.execution_id, _fields(record), events, fence,
                                 running=record.status == "running")

    async def append_events(self, execution_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        db = await self._setup()
        await copy_events(db, event_docs(execution_id, events))

    async def list_events(self, execution_id: str, after: int = 0) -> list[WireEvent]:
        """`run_events` merged with the events committed to the run's outbox and not yet
        copied (mongo_events.py): what the SSE stream, paging and resumes read."""
        db = await self._setup()
        return [_loaded(text) for text in await self.events.read(db, execution_id, after)]

    async def request_cancel(self, execution_id: str, by: str) -> None:
        db = await self._setup()
        await db.runs.update_one({"_id": execution_id}, {"$set": {"cancel_requested_by": by}})

    async def cancel_requested(self, execution_id: str) -> str | None:
        db = await self._setup()
        doc = await db.runs.find_one({"_id": execution_id}, {"cancel_requested_by": 1})
        return doc.get("cancel_requested_by") if doc else None

    async def count_descendants(self, execution_id: str) -> int:
        db = await self._setup()
        # A range on _id ('/' sorts right after '.'): a regex would scan the collection.
        return int(await db.runs.count_documents(
            {"_id": {"$gte": f"{execution_id}.", "$lt": f"{execution_id}/"}}))

    async def stale_runs(self, before: datetime) -> list[RunRecord]:
        db = await self._setup()
        docs = await db.runs.find({"status": {"$in": ["queued", "running"]},
                                   "updated_at": {"$lt": _ms(before)}}, {OUTBOX: 0}).sort(
            "created_at", ASCENDING).to_list(None)
        return [_run(d) for d in docs]

    async def claim_run(self, execution_id: str, seen_status: str,
                        seen_updated_at: datetime) -> bool:
        db = await self._setup()
        seen = _ms(seen_updated_at)
        # Later than what was seen even within the same millisecond: the record must
        # change, or a second claimer would match too (and MongoDB counts no change).
        claimed = max(_ms(datetime.now(UTC)), seen + timedelta(milliseconds=1))
        where: dict[str, Any] = {"_id": execution_id, "status": seen_status, "updated_at": seen}
        # The claim count (`epoch`) moves in the same update: the checkpoint fence.
        change: dict[str, Any] = {"$set": {"status": "running", "updated_at": claimed},
                                  "$inc": {"epoch": 1}}
        if seen_status == "queued":
            where["cancel_requested_by"] = None  # also matches a missing field
        elif seen_status in ("failed", "waiting"):
            change["$unset"] = {"cancel_requested_by": ""}
        claim = await db.runs.find_one_and_update(
            where, change, projection={"epoch": 1, "wseq": 1, "sealed": 1},
            return_document=ReturnDocument.AFTER)
        if claim is None:
            return False
        await self._seal(db, execution_id, claim)
        return True

    async def _seal(self, db: Any, thread: str, claim: Mapping[str, Any]) -> None:
        """Right after a claim: every checkpoint slot handed out before it that holds no
        write yet gets a tombstone, so an earlier owner's late write is never read
        (mongo_saver.py says why; its owners check again before their first read)."""
        sealed, last = claim.get("sealed") or 0, claim.get("wseq") or 0
        if last <= sealed:
            return
        pairs = list(zip((db[CHECKPOINTS], db[WRITES]),
                         landed_queries(thread, sealed, last), strict=True))
        if sum([await c.count_documents(q) for c, q in pairs]) < last - sealed:
            used = {d["slot"] for c, q in pairs
                    for d in await c.find(q, {"slot": 1}).to_list(None)}
            holes = tombstones(thread, sealed, last, used)
            for collection, _ in pairs:
                try:
                    if holes:
                        await collection.insert_many(holes, ordered=False)
                except BulkWriteError as exc:
                    if not duplicates_only(exc):  # a slot written meanwhile stays so
                        raise
        await db.runs.update_one({"_id": thread, "epoch": claim.get("epoch")},
                                 {"$max": {"sealed": last}})

    async def save_run_if(self, record: RunRecord, seen_status: str,
                          seen_updated_at: datetime) -> bool:
        db = await self._setup()
        result = await db.runs.update_one(
            {"_id": record.execution_id, "status": seen_status,
             "updated_at": _ms(seen_updated_at)},
            {"$set": _fields(record)})
        return bool(result.modified_count)

    async def claim_idempotency_key(self, key: str, request_hash: str,
                                    execution_id: str) -> tuple[str, str] | None:
        db = await self._setup()
        now = _ms(datetime.now(UTC))
        try:
            await db.idempotency_keys.insert_one({"_id": key, "request_hash": request_hash,
                                                  "execution_id": execution_id,
                                                  "expires_from": now})
            return None
        except DuplicateKeyError:
            doc = await db.idempotency_keys.find_one({"_id": key})
            return (doc["request_hash"], doc["execution_id"]) if doc else None

    async def delete_runs_before(self, cutoff: datetime) -> int:
        db = await self._setup()
        ids = [d["_id"] for d in await db.runs.find(
            {"created_at": {"$lt": _ms(cutoff)}, "status": {"$in": sorted(FINISHED)}},
            {"_id": 1}).to_list(None)]
        for start in range(0, len(ids), RETENTION_BATCH):  # each batch a bounded request
            batch = ids[start:start + RETENTION_BATCH]
            await db.run_events.delete_many({"execution_id": {"$in": batch}})
            await db.idempotency_keys.delete_many({"execution_id": {"$in": batch}})
            await db[CHECKPOINTS].delete_many({"thread_id": {"$in": batch}})
            await db[WRITES].delete_many({"thread_id": {"$in": batch}})
            await db.runs.delete_many({"_id": {"$in": batch}})  # last: a retry finds the rest
        return len(ids)

    @asynccontextmanager
    async def checkpointer(self) -> AsyncIterator[FencedMongoDBSaver]:
        """One saver (and client pool) for every run of this store, as on SQLite: compiled
        graphs are cached per saver, and a client per run would cost a connection each."""
        if self._saver is None:
            self._saver_client = self._sync_client_factory()
            self._saver = FencedMongoDBSaver(self._saver_client, db_name=self.db_name,
                                             runs_collection="runs",
                                             checkpoint_collection_name=CHECKPOINTS,
                                             writes_collection_name=WRITES,
                                             serde=CheckpointSerializer())
        yield self._saver


def _workflow(doc: dict[str, Any]) -> StoredWorkflow:
    created = doc["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return StoredWorkflow(doc["id"], doc["version"], doc["document"], created)


# Records and events are kept as JSON text: BSON has no integers past 64 bits, and JSON
# numbers that large are common (ids). Documents written as BSON before still read.
def _fields(record: RunRecord) -> dict[str, Any]:
    """What every write of a run sets: the record, and the fields queries filter on."""
    return {"status": record.status, "record": record.model_dump_json(),
            "updated_at": _ms(record.updated_at or record.created_at),
            "errors": "\n".join(e.message for e in record.errors)}


def _run(doc: dict[str, Any]) -> RunRecord:
    raw = doc["record"]
    record = RunRecord.model_validate_json(raw) if isinstance(raw, str) else (
        RunRecord.model_validate(raw))
    # A claim changes only these two fields of the document: they are the truth.
    record.status = doc["status"]
    claimed = doc.get("updated_at")
    if claimed is not None and _ms(claimed) != _ms(record.updated_at or record.created_at):
        record.updated_at = _ms(claimed).replace(tzinfo=UTC)
    return record


def _loaded(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


def _store_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """A driver error leaves a store method as a StoreError naming the store (password
    hidden), as on SQLite: the run's watcher backs off on StoreError and retries, and
    the API answers 503; a raw PyMongoError would end the watcher and answer 500."""
    @functools.wraps(method)
    async def call(self: MongoStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except StoreError:
            raise
        except PyMongoError as exc:
            raise StoreError(f"MongoDB store {self.url}: {exc}") from None
    return call


for _name, _method in list(vars(MongoStore).items()):
    if not _name.startswith("_") and inspect.iscoroutinefunction(_method):
        setattr(MongoStore, _name, _store_errors(_method))
