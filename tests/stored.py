"""What a store holds of a run, read from outside the processes under test (on either
backend): its events through the store, its checkpoint rows counted directly."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from pymongo import MongoClient

from flowloom.app.records import RunRecord
from flowloom.app.runner import run_sync
from flowloom.app.settings import load_settings
from flowloom.app.stores import open_store
from flowloom.app.stores.mongo import CHECKPOINTS, WRITES
from flowloom.app.stores.mongo_saver import COMMIT, FENCE_NS


def events(store_url: str, execution_id: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = open_store(load_settings(store=store_url))
        try:
            return [dict(e) for e in await store.list_events(execution_id)]
        finally:
            await store.close()

    return run_sync(read())


def record(store_url: str, execution_id: str) -> RunRecord | None:
    async def read() -> RunRecord | None:
        store = open_store(load_settings(store=store_url))
        try:
            return await store.get_run(execution_id)
        finally:
            await store.close()

    return run_sync(read())


def checkpoint_rows(store_url: str, execution_id: str) -> dict[str, int]:
    """How many checkpoints and task writes of the run a reader can see, every namespace
    included. (On MongoDB a stalled owner's task writes may land after a takeover, but
    unreadable: their batch has no commit marker. Markers and the seal's tombstones are
    the fence's own documents, not checkpoints: see mongo_saver.py.)"""
    settings = load_settings(store=store_url)
    if settings.sqlite_path is not None:
        with closing(sqlite3.connect(settings.sqlite_path)) as db:
            return {table: db.execute(f"SELECT count(*) FROM {table} WHERE thread_id = ?",
                                      (execution_id,)).fetchone()[0]
                    for table in ("checkpoints", "writes")}
    base, name = store_url.rsplit("/", 1)
    run = {"thread_id": execution_id, "checkpoint_ns": {"$ne": FENCE_NS}}
    with MongoClient(base) as client:
        writes = list(client[name][WRITES].find(run, {"_id": 0, "value": 0}))
        committed = {(w["checkpoint_ns"], w["checkpoint_id"], w["slot"]) for w in writes
                     if w["task_id"] == COMMIT}
        return {"checkpoints": client[name][CHECKPOINTS].count_documents(run),
                "writes": sum(1 for w in writes if w["task_id"] != COMMIT and (
                    w.get("batch") is None
                    or (w["checkpoint_ns"], w["checkpoint_id"], w["batch"]) in committed))}
