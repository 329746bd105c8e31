"""MongoDB's event log on a real wire-protocol server (SecantusDB): an owner's events are
committed by its fenced record write (the run document's outbox) and copied to
`run_events` after, so an owner stalled between the two never takes its successor's
seqs, and events committed but not yet copied are read like the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from pymongo.database import Database

from flowloom.app.api.main import create_app
from flowloom.app.records import RunRecord
from flowloom.app.settings import load_settings
from flowloom.app.stores import mongo_events
from flowloom.app.stores.errors import LeaseLost
from flowloom.app.stores.lease import Lease
from flowloom.app.stores.mongo import MongoStore
from tests.app.test_fencing import owned, take_over
from tests.conftest import wait_until

pytestmark = pytest.mark.parametrize("store_url", ["mongodb"], indirect=True)


class Crash(Exception):
    """The owner dies between committing its events and copying them."""


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[list[MongoStore]]:
    """Two processes' stores (each its own client) on one database."""
    opened = [MongoStore(store_url), MongoStore(store_url)]
    yield opened
    for store in opened:
        await store.close()


def event(seq: int, who: str) -> dict[str, Any]:
    return {"seq": seq, "event": "node.started", "node_id": f"{who}-{seq}"}


async def write(store: MongoStore, record: RunRecord, lease: Lease,
                events: list[dict[str, Any]], status: str = "running") -> None:
    """One write of an owner, as LiveRecord.flush makes it: the record moves the token,
    fenced on the ones before."""
    assert lease.latest is not None
    token = lease.latest + timedelta(milliseconds=5)
    record.status, record.updated_at = status, token  # type: ignore[assignment]
    await store.save_run_with_events(record, events, fence=lease.moving_to(token))
    lease.moved_to(token)


def stored(store_url: str, execution_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What the database holds of the run's log, read directly: `run_events`, outbox."""
    base, name = store_url.rsplit("/", 1)
    client: MongoClient[dict[str, Any]]
    with MongoClient(base) as client:
        db: Database[dict[str, Any]] = client[name]
        logged: list[dict[str, Any]] = list(db.run_events.find(
            {"execution_id": execution_id}, {"_id": 0}).sort("seq", 1))
        run: dict[str, Any] = db.runs.find_one({"_id": execution_id}, {"outbox": 1}) or {}
    return logged, run.get("outbox") or {}


async def test_a_stalled_owners_events_never_take_its_successors_seqs(
        stores: list[MongoStore], store_url: str) -> None:
    old, new = stores
    record, lease = await owned(old, "zombie")
    await write(old, record, lease, [event(1, "old"), event(2, "old")])
    reached, go = asyncio.Event(), asyncio.Event()

    async def stall(execution_id: str) -> None:  # a SIGSTOP, a GC pause, a loop stall
        reached.set()
        await go.wait()

    old.events.between_commit_and_copy = stall
    stalled = asyncio.create_task(write(old, record, lease, [event(3, "old"), event(4, "old")]))

    async def held() -> bool:
        return reached.is_set()

    await wait_until(held, "the owner to stall between its record write and its events")
    old.events.between_commit_and_copy = None
    # Its lease runs out: another process claims the run, reads its log and numbers its
    # own events after the last seq it sees ...
    await take_over(new, "zombie")
    claimed = await new.get_run("zombie")
    assert claimed is not None and claimed.updated_at is not None
    mine = Lease("zombie", claimed.updated_at)
    last = (await new.list_events("zombie"))[-1]["seq"]
    ours = [event(last + n, "new") for n in (1, 2, 3)]
    # ... while the stalled owner wakes and finishes its write first.
    go.set()
    await stalled
    await write(new, claimed, mine, ours)
    with pytest.raises(LeaseLost):  # its next write, after the claim
        await write(old, record, lease, [event(5, "late"), event(6, "late")])

    log = await new.list_events("zombie")
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    names = [e["node_id"] for e in log]
    # Every event of the new owner, at the seq it gave it; the old owner's events are
    # those it committed before the claim, and nothing after.
    assert names == ["old-1", "old-2", "old-3", "old-4", "new-5", "new-6", "new-7"]
    assert names[-3:] == [e["node_id"] for e in ours]
    logged, outbox = stored(store_url, "zombie")
    assert [d["seq"] for d in logged] == list(range(1, 8))
    assert "late-" not in repr(logged) + repr(outbox)
    assert len(outbox) == 3  # the new owner's last write: copied, removed by its next


async def test_events_committed_but_not_copied_are_listed_and_replayed(
        stores: list[MongoStore], store_url: str) -> None:
    owner, reader = stores
    record, lease = await owned(owner, "cut")
    await write(owner, record, lease, [{"seq": 1, "event": "run.started"}])

    async def killed(execution_id: str) -> None:
        raise Crash(execution_id)

    owner.events.between_commit_and_copy = killed
    last = [{"seq": 2, "event": "node.started", "node_id": "a"},
            {"seq": 3, "event": "node.succeeded", "node_id": "a"},
            {"seq": 4, "event": "run.finished", "status": "succeeded"}]
    with pytest.raises(Crash):
        await write(owner, record, lease, last, status="succeeded")
    logged, outbox = stored(store_url, "cut")
    assert ([d["seq"] for d in logged], sorted(outbox)) == ([1], ["2", "3", "4"])

    # Paging past what is in the log: only what the outbox holds, in order.
    assert [e["seq"] for e in await reader.list_events("cut", after=2)] == [3, 4]
    app = create_app(load_settings(store=store_url))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
        replay = await api.get("/executions/cut/events")
        later = await api.get("/executions/cut/events", headers={"Last-Event-ID": "1"})
    ids = [int(line[4:]) for line in replay.text.splitlines() if line.startswith("id: ")]
    assert ids == [1, 2, 3, 4]  # and the stream ended: the run is finished
    assert [int(line[4:]) for line in later.text.splitlines()
            if line.startswith("id: ")] == [2, 3, 4]
    assert "run.finished" in replay.text
    # Whoever read them copied them (idempotently) and emptied the outbox.
    logged, outbox = stored(store_url, "cut")
    assert ([d["seq"] for d in logged], outbox) == ([1, 2, 3, 4], {})
    assert [e["seq"] for e in await owner.list_events("cut")] == [1, 2, 3, 4]


async def test_the_outbox_holds_one_part_of_a_large_batch_at_most(
        stores: list[MongoStore], store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mongo_events, "PART_EVENTS", 4)
    owner, _ = stores
    record, lease = await owned(owner, "big")
    sizes: list[int] = []

    async def measure(execution_id: str) -> None:
        sizes.append(len(stored(store_url, execution_id)[1]))

    owner.events.between_commit_and_copy = measure
    await write(owner, record, lease, [event(n, "a") for n in range(1, 11)])
    assert sizes == [4, 4, 2]  # each part removed with the next one's commit
    assert sorted(stored(store_url, "big")[1]) == ["10", "9"]
    await write(owner, record, lease, [])  # a heartbeat removes the last part
    assert stored(store_url, "big")[1] == {}
    await write(owner, record, lease, [event(11, "a")], status="succeeded")
    assert stored(store_url, "big")[1] == {}  # the run's last write leaves none
    assert [e["seq"] for e in await owner.list_events("big")] == list(range(1, 12))
    record_now = await owner.get_run("big")
    assert record_now is not None and record_now.status == "succeeded"
