"""Orphaned runs are taken over by exactly one of the processes that notice them, on
SQLite and on MongoDB (SecantusDB)."""

from __future__ import annotations

import asyncio
import contextlib

from flowloom.app.api.manager import RunManager
from flowloom.app.services import open_services
from flowloom.app.settings import Settings
from flowloom.app.stores.base import Store
from flowloom.nodes.services import Services
from tests.conftest import GatedSleep, Runner, chain, delay, t, wait_until
from tests.service_fixtures import ON_EVERY_STORE

pytestmark = ON_EVERY_STORE


async def test_two_managers_recover_an_orphaned_run_once(run: Runner, store: Store,
                                                         settings: Settings) -> None:
    doc = {"nodes": [t("a", 1), delay("nap", 0.3), t("b", "{{ a + 1 }}")],
           "edges": chain("a", "nap", "b")}
    sleep = GatedSleep()
    task = asyncio.create_task(run(doc, execution_id="orphan", services=Services(sleep=sleep)))

    async def napping() -> bool:
        return len(sleep.asked) == 1

    await wait_until(napping, "`nap` to start waiting")
    task.cancel()  # as if its process died: the record stays `running`
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (await store.get_run("orphan")).status == "running"  # type: ignore[union-attr]
    async with open_services(settings) as services:
        # stale at once (no heartbeat can come from a dead process): no waiting for it
        first = RunManager(store, services, workers=2, stale_after_s=0.0)
        second = RunManager(store, services, workers=2, stale_after_s=0.0)
        await asyncio.gather(first.recover(), second.recover())
        # Both noticed it; each claims it when a slot frees up, and one of them wins.
        results = await asyncio.gather(*first.tasks.values(), *second.tasks.values())
    ran = [r for r in results if r is not None]
    assert len(ran) == 1
    assert ran[0].status == "succeeded" and ran[0].output == 2
    events = await store.list_events("orphan")
    assert [e.get("node_id") for e in events if e["event"] == "node.started"].count("b") == 1


async def test_a_queued_run_is_started_by_one_manager_only(store: Store,
                                                           settings: Settings) -> None:
    from flowloom.app.runner import prepare_run
    doc = {"id": "once", "nodes": [t("a", 1), t("b", "{{ a + 1 }}")], "edges": chain("a", "b")}
    _, queued = await prepare_run(store, doc, status="queued")
    async with open_services(settings) as services:
        # Two processes of one deployment: this one queued the run and another found it
        # while recovering (its queue was long). Only the first to claim it runs it.
        first = RunManager(store, services, workers=2, stale_after_s=1.0)
        second = RunManager(store, services, workers=2, stale_after_s=1.0)
        seen_by_second = await store.get_run(queued.execution_id)
        assert seen_by_second is not None
        results = await asyncio.gather(first.start(queued), second.start(seen_by_second))
    assert sorted(r is None for r in results) == [False, True]
    done = next(r for r in results if r is not None)
    assert done.status == "succeeded" and done.output == 2
    events = await store.list_events(queued.execution_id)
    assert [e["event"] for e in events].count("run.started") == 1


async def test_a_run_cancelled_while_queued_never_starts(store: Store,
                                                         settings: Settings) -> None:
    from flowloom.app.runner import cancel_workflow, prepare_run
    doc = {"id": "never", "nodes": [t("a", 1)], "edges": []}
    _, queued = await prepare_run(store, doc, status="queued")
    await cancel_workflow(queued.execution_id, store=store)
    async with open_services(settings) as services:
        manager = RunManager(store, services, workers=1)
        assert await manager.start(queued) is None
    after = await store.get_run(queued.execution_id)
    assert after is not None and after.status == "cancelled" and after.node_states == {}
    assert await store.list_events(queued.execution_id) == []


async def test_recovery_never_resumes_a_child_whose_parent_finished(
        store: Store, settings: Settings) -> None:
    from datetime import timedelta

    from flowloom.app.records import RunRecord, utcnow
    old = utcnow() - timedelta(seconds=60)

    def stored(execution_id: str, status: str, parent: str | None = None) -> RunRecord:
        return RunRecord(execution_id=execution_id, workflow_id="w", workflow_version=1,
                         status=status, created_at=old, updated_at=old,  # type: ignore[arg-type]
                         parent_execution_id=parent)

    # Each parent's process ended it but died before its child heard of it.
    for parent, status in (("done", "succeeded"), ("broke", "failed"), ("stopped", "cancelled")):
        await store.save_run(stored(parent, status))
        await store.save_run(stored(f"{parent}.sub", "running", parent))
    await store.save_run(stored("gone.sub", "running", "gone"))  # its parent deleted
    await store.save_run(stored("live", "running"))  # stale too: its own process died
    await store.save_run(stored("live.sub", "running", "live"))
    async with open_services(settings) as services:
        manager = RunManager(store, services, workers=2, stale_after_s=0.0)
        await manager.recover()
        assert set(manager.tasks) == {"live"}  # the child is the parent's to take over
        for task in list(manager.tasks.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    for parent, status in (("done", "succeeded"), ("broke", "failed"), ("stopped", "cancelled")):
        child = await store.get_run(f"{parent}.sub")
        assert child is not None
        assert (child.status, child.cancelled_by) == ("cancelled", f"parent {parent} {status}")
        assert await store.cancel_requested(f"{parent}.sub") == f"parent {parent} {status}"
        assert await store.list_events(f"{parent}.sub") == []
    gone = await store.get_run("gone.sub")
    assert gone is not None and (gone.status, gone.cancelled_by) == ("cancelled",
                                                                      "parent gone gone")
    left = {r.execution_id for r in await store.stale_runs(utcnow())}
    assert left <= {"live", "live.sub"}
