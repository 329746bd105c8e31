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
    """How many checkpoints and task writes the run has, every namespace included."""
    settings = load_settings(store=store_url)
    if settings.sqlite_path is not None:
        with closing(sqlite3.connect(settings.sqlite_path)) as db:
            return {table: db.execute(f"SELECT count(*) FROM {table} WHERE thread_id = ?",
                                      (execution_id,)).fetchone()[0]
                    for table in ("checkpoints", "writes")}
    base, name = store_url.rsplit("/", 1)
    with MongoClient(base) as client:
        return {kind: client[name][collection].count_documents({"thread_id": execution_id})
                for kind, collection in (("checkpoints", CHECKPOINTS), ("writes", WRITES))}
