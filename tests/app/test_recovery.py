"""Orphaned runs are taken over by exactly one of the processes that notice them."""

from __future__ import annotations

import asyncio
import contextlib

from app.api.manager import RunManager
from app.services import open_services
from app.settings import Settings
from app.stores.sqlite import SqliteStore
from tests.conftest import Runner, chain, delay, t


async def test_two_managers_recover_an_orphaned_run_once(run: Runner, store: SqliteStore,
                                                         settings: Settings) -> None:
    doc = {"nodes": [t("a", 1), delay("nap", 0.3), t("b", "{{ a + 1 }}")],
           "edges": chain("a", "nap", "b")}
    task = asyncio.create_task(run(doc, execution_id="orphan"))
    await asyncio.sleep(0.15)
    task.cancel()  # as if its process died: the record stays `running`
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (await store.get_run("orphan")).status == "running"  # type: ignore[union-attr]
    await asyncio.sleep(1.2)
    async with open_services(settings) as services:
        first = RunManager(store, services, workers=2, stale_after_s=1.0)
        second = RunManager(store, services, workers=2, stale_after_s=1.0)
        await asyncio.gather(first.recover(), second.recover())
        taken = [*first.tasks.values(), *second.tasks.values()]
        assert len(taken) == 1
        record = await taken[0]
    assert record.status == "succeeded" and record.output == 2
