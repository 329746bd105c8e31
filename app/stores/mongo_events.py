"""MongoDB's event log, fenced like the record: a transactional outbox in the run document.

An owner's events are committed by the same single-document update that writes its
record conditionally on its fencing token: the update sets them in the run document's
`outbox`, keyed by seq. An owner that lost its lease matches nothing, so it commits no
event. Once the update succeeded, the owner copies the events into `run_events` (unique
on execution id and seq: a copy made twice is ignored), and its next update (or, when the
run stops running, one more) removes the copied ones from the outbox. A reader merges
the outbox with `run_events` by seq, and copies what it finds not yet copied.

Why a new owner's events are never lost to a stalled one's:
1. An event leaves the outbox only after it is in `run_events`, and a reader reads the
   outbox first: every event committed before a read is seen by it, in one or the other.
2. Every event an earlier owner committed was committed before the claim (its later
   updates fail on the fence), and a new owner reads the log after its claim, so it
   numbers its own events after all of them.
So no two committed events share a seq: a stalled owner's late copy is of events it
committed before the claim, which everyone reads already; it can only duplicate them.

The outbox is an object keyed by seq rather than an array: a retried write sets the
same keys again (no duplicates), and removing copied events rides in the next commit's
update ($set and $unset of different keys share one update; $push and $pull of one array
may not), so a write still costs two requests. A batch larger than PART_EVENTS events or
PART_BYTES of JSON is committed in parts, each fenced and copied before the next, and
only the last part carries the record: the outbox never holds more than one part.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError, PyMongoError

from flowloom.app.stores.base import json_text
from flowloom.app.stores.errors import LeaseLost
from flowloom.app.stores.mongo_saver import mongo_time

OUTBOX = "outbox"
PART_EVENTS = 500  # events committed in one update at most
PART_BYTES = 1 << 20  # and about this much event JSON (a document holds 16 MB in all)
log = logging.getLogger("flowloom.store")


def event_docs(execution_id: str, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"execution_id": execution_id, "seq": e["seq"], "event": json_text(e)}
            for e in events]


def parts(docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The batch in parts of at most PART_EVENTS events and about PART_BYTES; the last
    one (empty for a write without events) goes with the record."""
    out: list[list[dict[str, Any]]] = []
    part: list[dict[str, Any]] = []
    size = 0
    for doc in docs:
        if part and (len(part) >= PART_EVENTS or size + len(doc["event"]) > PART_BYTES):
            out.append(part)
            part, size = [], 0
        part.append(doc)
        size += len(doc["event"])
    out.append(part)
    return out


def _removal(seqs: Sequence[int]) -> dict[str, str]:
    return {f"{OUTBOX}.{seq}": "" for seq in seqs}


async def copy_events(db: Any, docs: Sequence[Mapping[str, Any]]) -> None:
    """Into `run_events`; what is there already (a replay, a copy made twice) stays."""
    if not docs:
        return
    try:
        await db.run_events.insert_many([dict(d) for d in docs], ordered=False)
    except BulkWriteError as exc:
        if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
            raise


class EventLog:
    def __init__(self) -> None:
        # Per run: the seqs this process copied, still in the outbox (its next update
        # removes them). Removing a copied event is safe whoever does it: 1 and 2 above.
        self.copied: dict[str, list[int]] = {}
        # Called between an owner's commit and its copy: tests stall (or end) an owner here.
        self.between_commit_and_copy: Callable[[str], Awaitable[None]] | None = None

    async def commit(self, db: Any, execution_id: str, fields: Mapping[str, Any],
                     events: Sequence[Mapping[str, Any]], fence: Sequence[datetime],
                     running: bool) -> None:
        """The record and its events, fenced on `fence`; LeaseLost if another process
        claimed the run (then nothing of this call is committed but earlier parts)."""
        tokens = [mongo_time(token) for token in fence]
        batch = parts(event_docs(execution_id, events))
        for n, part in enumerate(batch):
            change: dict[str, Any] = {"$set": {
                **(fields if n == len(batch) - 1 else {}),
                **{f"{OUTBOX}.{d['seq']}": {"seq": d["seq"], "event": d["event"]}
                   for d in part}}}
            # What a retry sets again is not removed by the same update (a conflict).
            again = {d["seq"] for d in part}
            done = [seq for seq in self.copied.pop(execution_id, []) if seq not in again]
            if done:
                change["$unset"] = _removal(done)
            try:
                result = await db.runs.update_one(
                    {"_id": execution_id, "updated_at": {"$in": tokens}}, change)
            except BaseException:
                self.copied.setdefault(execution_id, []).extend(done)  # removed again later
                raise
            if not result.matched_count:
                await self._remove(db, execution_id, done)
                raise LeaseLost(f"run {execution_id} was taken over by another process")
            if self.between_commit_and_copy is not None:
                await self.between_commit_and_copy(execution_id)
            await copy_events(db, part)
            self.copied[execution_id] = [d["seq"] for d in part]
        if not running:  # no next write is coming soon to empty the outbox
            await self._remove(db, execution_id, self.copied.pop(execution_id, []))

    async def _remove(self, db: Any, execution_id: str, seqs: Sequence[int]) -> None:
        """Best effort: a copied event left in the outbox is merged away by its readers."""
        if seqs:
            with contextlib.suppress(PyMongoError):
                await db.runs.update_one({"_id": execution_id}, {"$unset": _removal(seqs)})

    async def read(self, db: Any, execution_id: str, after: int) -> list[str]:
        """The event texts after seq `after`, in order: those in `run_events` and those
        committed but not yet copied (copied now, if this process may write)."""
        run = await db.runs.find_one({"_id": execution_id}, {OUTBOX: 1})  # first: 1 above
        waiting = [d for d in ((run or {}).get(OUTBOX) or {}).values() if d["seq"] > after]
        docs = await db.run_events.find({"execution_id": execution_id, "seq": {"$gt": after}},
                                        {"_id": 0, "seq": 1, "event": 1}
                                        ).sort("seq", ASCENDING).to_list(None)
        logged = {d["seq"] for d in docs}
        missing = [d for d in waiting if d["seq"] not in logged]
        if missing:
            try:
                await copy_events(db, [{"execution_id": execution_id, **d} for d in missing])
            except PyMongoError as exc:  # a reader that may not write still reads them
                log.debug("run %s: events left in its outbox (%s)", execution_id, exc)
            else:
                await self._remove(db, execution_id, [d["seq"] for d in missing])
            docs = sorted([*docs, *missing], key=lambda d: d["seq"])
        return [d["event"] for d in docs]
