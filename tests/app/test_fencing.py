"""Fencing on every backend: once another process has claimed a run, nothing its former
owner writes lands, whether the run's record, its events or its checkpoints."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from flowloom.app.lifecycle import live as execution
from flowloom.app.records import RunRecord
from flowloom.app.runner import execute_workflow_async
from flowloom.app.settings import load_settings
from flowloom.app.stores.base import Store
from flowloom.app.stores.errors import LeaseLost
from flowloom.app.stores.lease import LEASE_KEY, Lease
from flowloom.app.stores.mongo import MongoStore
from flowloom.app.stores.mongo_saver import mongo_time
from flowloom.nodes.services import Services
from tests.conftest import GatedSleep, chain, delay, t, wait_until


async def owned(store: Store, execution_id: str) -> tuple[RunRecord, Lease]:
    """A running run, and the lease of the process that claimed it."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    await store.save_run(RunRecord(execution_id=execution_id, status="running",
                                   created_at=now, updated_at=now))
    stored = await store.get_run(execution_id)
    assert stored is not None and stored.updated_at is not None
    return stored, Lease(execution_id, stored.updated_at)


async def take_over(store: Store, execution_id: str) -> None:
    """What another process does once the run looks stale: claim it."""
    seen = await store.get_run(execution_id)
    assert seen is not None and seen.updated_at is not None
    assert await store.claim_run(execution_id, "running", seen.updated_at)


async def test_an_owners_record_writes_land_only_while_its_lease_holds(backend: Store) -> None:
    record, lease = await owned(backend, "rec")
    first = record.updated_at
    assert first is not None
    record.updated_at = first + timedelta(seconds=1)
    await backend.save_run_with_events(record, [{"seq": 1, "event": "run.started"}],
                                       fence=lease.tokens)
    # A write whose answer was lost may have landed: fenced on both values, the next
    # write goes through whichever the store holds.
    in_doubt = (first, record.updated_at)
    record.updated_at += timedelta(seconds=1)
    await backend.save_run_with_events(record, [{"seq": 2, "event": "node.started"}],
                                       fence=in_doubt)
    mine = record.updated_at
    await take_over(backend, "rec")
    record.status, record.updated_at = "succeeded", mine + timedelta(seconds=1)
    with pytest.raises(LeaseLost, match="rec was taken over"):
        await backend.save_run_with_events(record, [{"seq": 3, "event": "run.finished"}],
                                           fence=(mine,))
    assert [e["seq"] for e in await backend.list_events("rec")] == [1, 2]
    stored = await backend.get_run("rec")
    assert stored is not None and stored.status == "running"
    assert stored.updated_at is not None and stored.updated_at > mine  # the claim's


def checkpoint_config(execution_id: str, lease: Lease | None,
                      checkpoint_id: str | None = None) -> RunnableConfig:
    conf: dict[str, Any] = {"thread_id": execution_id, "checkpoint_ns": ""}
    if lease is not None:
        conf[LEASE_KEY] = lease
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


async def stored_checkpoints(saver: Any, execution_id: str) -> list[tuple[str, int]]:
    """(checkpoint id, count of its task writes), newest first."""
    return [(c.checkpoint["id"], len(c.pending_writes or ()))
            async for c in saver.alist({"configurable": {"thread_id": execution_id}})]


async def checkpoint_writes_after_a_takeover(store: Store, execution_id: str) -> None:
    _, lease = await owned(store, execution_id)
    meta: Any = {"source": "loop", "step": 0, "parents": {}}
    async with store.checkpointer() as saver:
        first = empty_checkpoint()
        await saver.aput(checkpoint_config(execution_id, lease), first, meta, {})
        in_first = checkpoint_config(execution_id, lease, first["id"])
        await saver.aput_writes(in_first, [("x", 1)], "task-a")
        await take_over(store, execution_id)
        with pytest.raises(LeaseLost):
            await saver.aput_writes(in_first, [("x", 2)], "task-b")
        assert lease.lost
        with pytest.raises(LeaseLost):
            await saver.aput(checkpoint_config(execution_id, lease, first["id"]),
                             empty_checkpoint(), meta, {})
        assert await stored_checkpoints(saver, execution_id) == [(first["id"], 1)]
        # A graph run outside any owner (no lease in its config) is not fenced.
        free = empty_checkpoint()
        await saver.aput(checkpoint_config(execution_id, None), free, meta, {})
        assert len(await stored_checkpoints(saver, execution_id)) == 2


async def test_an_owners_checkpoint_writes_land_only_while_its_lease_holds(
        backend: Store) -> None:
    await checkpoint_writes_after_a_takeover(backend, "cp")


async def test_a_run_taken_over_mid_node_writes_no_checkpoint_and_starts_nothing(
        backend: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # The watcher stays quiet, so the first write after the takeover is the finished
    # node's checkpoint write: the saver's fence alone must stop the run.
    monkeypatch.setattr(execution, "FLUSH_INTERVAL_S", 3600.0)
    settings = load_settings(store=f"sqlite:///{tmp_path / 'unused.db'}")
    sleep = GatedSleep()
    doc = {"nodes": [t("a", 1), delay("nap", 5), t("b", 2), t("c", 3)],
           "edges": chain("a", "nap", "b", "c")}
    events: list[dict[str, Any]] = []
    run = asyncio.create_task(execute_workflow_async(
        doc, execution_id="mid", store=backend, settings=settings,
        services=Services(sleep=sleep), on_event=events.append))

    async def napping() -> bool:
        return len(sleep.asked) == 1

    await wait_until(napping, "`nap` to start waiting")
    async with backend.checkpointer() as saver:
        await take_over(backend, "mid")
        # Read once the claim is done: a write the owner had in flight at the claim (a
        # node's progress) may land until then (MongoDB: until the claim's seal).
        before = await stored_checkpoints(saver, "mid")
        claimed = await backend.get_run("mid")
        sleep.gate.set()  # the node finishes in the former owner
        await run
        assert await stored_checkpoints(saver, "mid") == before
    assert await backend.get_run("mid") == claimed  # nor the record
    started = [e["node_id"] for e in events if e["event"] == "node.started"]
    assert started == ["a", "nap"]  # b never started


class AnswerLost:
    """A store whose record writes land, but whose answer can be made never to come
    back (a connection dropped after the write, a flush cancelled while it waits)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.answer = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def save_run_with_events(self, record: RunRecord, events: Any,
                                   fence: Any = None) -> None:
        await self.store.save_run_with_events(record, events, fence)
        if not self.answer:
            await asyncio.Event().wait()


async def test_a_write_that_landed_unheard_of_does_not_cost_the_lease(backend: Store) -> None:
    record, lease = await owned(backend, "unheard")
    store = AnswerLost(backend)
    live = execution.LiveRecord(store, record, 0, None)  # type: ignore[arg-type]
    live.lease = lease
    store.answer = False
    live.emit({"event": "run.started"})
    flush = asyncio.create_task(live.flush())

    async def landed() -> bool:
        return len(await backend.list_events("unheard")) == 1

    await wait_until(landed, "the first write to land")
    flush.cancel()  # the watcher stops while its write waits for an answer
    with pytest.raises(asyncio.CancelledError):
        await flush
    store.answer = True
    record.status = "succeeded"
    live.emit({"event": "run.finished", "status": "succeeded"})
    await live.flush()  # fenced on the landed write's value too: still this owner's
    assert not live.lost
    assert [e["seq"] for e in await backend.list_events("unheard")] == [1, 2]
    stored = await backend.get_run("unheard")
    assert stored is not None and stored.status == "succeeded"


class RecordWrittenMeanwhile:
    """The runs collection as the saver's thread sees it when the owner's record write
    lands while the saver's check is out: that write goes first, then the check."""

    def __init__(self, runs: Any, lease: Lease, token: datetime) -> None:
        self.runs, self.lease, self.token = runs, lease, token

    def __getattr__(self, name: str) -> Any:  # the slot's update, the seal's: as they are
        return getattr(self.runs, name)

    def find_one(self, *args: Any, **kwargs: Any) -> Any:
        self.runs.update_one({"_id": self.lease.execution_id},
                             {"$set": {"updated_at": mongo_time(self.token)}})
        self.lease.moved_to(self.token)
        return self.runs.find_one(*args, **kwargs)


async def test_a_mongodb_check_racing_the_owners_own_write_keeps_the_lease(
        backend: Store) -> None:
    if not isinstance(backend, MongoStore):
        pytest.skip("MongoDB: SQLite checks inline, in the write's transaction")
    _, lease = await owned(backend, "race")
    assert lease.latest is not None
    async with backend.checkpointer() as saver:
        saver.runs = RecordWrittenMeanwhile(saver.runs, lease,  # type: ignore[assignment]
                                            lease.latest + timedelta(seconds=1))
        first = empty_checkpoint()
        meta: Any = {"source": "loop", "step": 0, "parents": {}}
        await asyncio.to_thread(saver.put, checkpoint_config("race", lease), first, meta, {})
        assert not lease.lost
        assert await stored_checkpoints(saver, "race") == [(first["id"], 0)]
