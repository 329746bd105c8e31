"""Parts for the live record's tests: a real SQLite store that can be made to fail, the
pauses a LiveRecord asks for, a run owned by this process and its takeover."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowloom.app.lifecycle.live import LiveRecord
from flowloom.app.records import RunRecord
from flowloom.app.stores.errors import StoreError
from flowloom.app.stores.sqlite import SqliteStore


class FailingStore:
    """A real SQLite store whose next `fail_writes` record writes and `fail_checks`
    cancel checks raise a StoreError (a store hiccup no real SQLite file produces on
    demand); it counts the writes that reached the store."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self.fail_writes = self.fail_checks = 0
        self.writes = self.checks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def save_run_with_events(self, record: RunRecord, events: Sequence[Mapping[str, Any]],
                                   fence: Sequence[datetime] | None = None) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise StoreError("disk I/O error")
        await self.store.save_run_with_events(record, events, fence=fence)
        self.writes += 1

    async def cancel_requested(self, execution_id: str) -> str | None:
        self.checks += 1
        if self.fail_checks:
            self.fail_checks -= 1
            raise StoreError("disk I/O error")
        return await self.store.cancel_requested(execution_id)


class Pauses:
    """A LiveRecord's `sleep`: records each pause asked for and returns at once (after
    letting the other tasks run)."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)


async def owned_live(store: Any, execution_id: str, **record: Any) -> LiveRecord:
    """A running run created in `store`, and its owner's LiveRecord, lease taken."""
    from flowloom.app.lifecycle.live import take_lease
    now = datetime.now(UTC) - timedelta(seconds=1)
    record = {"created_at": now, "updated_at": now, **record}
    run = RunRecord(execution_id=execution_id, workflow_id="w", status="running", **record)
    assert await store.create_run(run)
    live = LiveRecord(store, run, 0, None)
    live.sleep = Pauses()
    await take_lease(store, live)
    return live


async def take_over(store: Any, execution_id: str) -> None:
    """What another process does once the run looks stale: claim it."""
    seen = await store.get_run(execution_id)
    assert seen is not None and seen.updated_at is not None
    assert await store.claim_run(execution_id, "running", seen.updated_at)
