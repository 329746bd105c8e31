"""MongoDB's checkpoint fence on a real wire-protocol server (SecantusDB): an owner that
stalls between its fence check and its write, while another process takes the run over,
may land that write, but nobody ever reads it. (test_fencing.py covers the fence's
other cases on every backend; SQLite checks inside the write's own transaction.)"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from flowloom.app.lifecycle import claims
from flowloom.app.runner import NotResumable, execute_workflow_async, resume_workflow
from flowloom.app.settings import Settings, load_settings
from flowloom.app.stores.errors import LeaseLost
from flowloom.app.stores.lease import Lease
from flowloom.app.stores.mongo import WRITES, MongoStore
from flowloom.nodes.services import Services
from tests.conftest import t, wait_until
from tests.servers import FlakyServer

RUN = "zombie"


class Stall:
    """Holds one task-writes call of a saver between its fence check and its write: the
    writes collection's `bulk_write` (the write itself, after the check in either the old
    or the new fence) waits for `go` when the writes hold node `a`'s reply."""

    def __init__(self, saver: Any) -> None:
        self.reached, self.go, self.done = threading.Event(), threading.Event(), threading.Event()
        self.raised: list[BaseException] = []
        self.armed = threading.local()
        writes, put_writes = saver.writes_collection, saver.put_writes
        stall = self

        class Held:
            def __getattr__(self, name: str) -> Any:
                return getattr(writes, name)

            def bulk_write(self, *args: Any, **kwargs: Any) -> Any:
                if getattr(stall.armed, "on", False):
                    stall.reached.set()
                    stall.go.wait(60)
                return writes.bulk_write(*args, **kwargs)

        def held_put_writes(config: Any, pending: Any, *args: Any) -> None:
            mine = "attempt" in repr(pending) and not stall.reached.is_set()
            stall.armed.on = mine
            try:
                put_writes(config, pending, *args)
            except BaseException as exc:
                if mine:
                    stall.raised.append(exc)
                raise
            finally:
                stall.armed.on = False
                if mine:
                    stall.done.set()

        saver.writes_collection = Held()
        saver.put_writes = held_put_writes


@pytest.fixture
def mongo_url(secantus_uri: str) -> Iterator[str]:
    name = f"flowloom_test_{uuid.uuid4().hex[:8]}"
    yield f"{secantus_uri.rstrip('/')}/{name}"
    with MongoClient(secantus_uri) as client:
        client.drop_database(name)


async def process(url: str) -> tuple[MongoStore, Any]:
    """What one process holds: its own store and checkpoint saver (its own clients)."""
    store = MongoStore(url)
    async with store.checkpointer() as saver:
        return store, saver


async def until(event: threading.Event, what: str) -> None:
    async def happened() -> bool:
        return event.is_set()

    await wait_until(happened, what)


@pytest.fixture
async def stores(mongo_url: str) -> AsyncIterator[Callable[[], Any]]:
    opened: list[MongoStore] = []

    async def open_one() -> tuple[MongoStore, Any]:
        store, saver = await process(mongo_url)
        opened.append(store)
        return store, saver

    yield open_one
    for store in opened:
        await store.close()


async def test_a_stalled_owners_late_write_is_never_read(
        stores: Callable[[], Any], web: tuple[FlakyServer, str], services: Services,
        mongo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server, base = web
    settings: Settings = load_settings(store=mongo_url, stale_after_s=10.0)
    # `a` and the approval run in one step: the run pauses on the checkpoint before it,
    # with `a`'s writes pending there, and the answer later reads them back.
    doc = {"nodes": [{"id": "a", "type": "http", "config": {
                          "method": "GET", "url": f"{base}/flaky?key=zombie"}},
                     {"id": "ask", "type": "approval", "config": {"prompt": "go?"}},
                     t("b", "{{ a.body.attempt }}")],
           "edges": [{"source": "a", "target": "b"}, {"source": "ask", "target": "b"}]}
    old, old_saver = await stores()
    old_stall = Stall(old_saver)
    owner = asyncio.create_task(execute_workflow_async(
        doc, execution_id=RUN, settings=settings, store=old, services=services))
    await until(old_stall.reached, "the first owner to stall in `a`'s write")

    # Another process takes the run over (its owner is alive, so: --force), and stalls
    # in its own write of `a`, so the first owner's late write comes before it.
    new, new_saver = await stores()
    new_stall = Stall(new_saver)
    monkeypatch.setattr(claims, "_DRIVEN_HERE", set())  # it knows nothing of this one's runs
    taker: asyncio.Task[Any] | None = None
    for _ in range(50):  # the first owner's heartbeat may move the record under the claim
        taker = asyncio.create_task(resume_workflow(
            RUN, settings=settings, store=new, services=services, force=True))

        async def claimed_or_refused(task: asyncio.Task[Any] = taker) -> bool:
            return task.done() or new_stall.reached.is_set()

        await wait_until(claimed_or_refused, "the takeover to claim the run or be refused")
        if new_stall.reached.is_set():
            break
        with pytest.raises(NotResumable, match="changed by another request"):
            await taker
    assert taker is not None and new_stall.reached.is_set()

    old_stall.go.set()  # the first owner wakes and writes `a`'s reply of attempt 1
    await until(old_stall.done, "the first owner's late write")
    await asyncio.wait_for(owner, 60)  # its heartbeat found the run taken: it stopped
    new_stall.go.set()
    paused = await taker
    assert paused.status == "waiting"
    assert [type(e) for e in old_stall.raised] == [LeaseLost]
    assert new_stall.raised == []

    # The answer resumes from the new owner's writes: `a` is not sent again and
    # `b` sees attempt 2. A later process (the answer) reads what the new owner wrote.
    answer, _ = await stores()
    record = await resume_workflow(RUN, {"approved": True}, settings=settings, store=answer,
                                   services=services)
    assert (record.status, record.output) == ("succeeded", 2)
    assert len(server.hits["zombie"]) == 2
    assert record.node_states["b"].output == 2
    # The late write did land (a stalled owner cannot be stopped from sending it): it
    # is never read.
    with MongoClient(mongo_url.rsplit("/", 1)[0]) as client:
        late = [w for w in client[mongo_url.rsplit("/", 1)[1]][WRITES].find(
            {"thread_id": RUN, "task_id": {"$ne": "\x00commit"}}) if b"attempt" in (
            w.get("value") or b"")]
    assert len(late) == 2  # `a`'s reply in each owner's batch


async def test_a_stalled_owners_late_checkpoint_fails_on_the_seal(mongo_url: str) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    from tests.app.test_fencing import checkpoint_config, owned, stored_checkpoints, take_over
    store = MongoStore(mongo_url)
    try:
        _, lease = await owned(store, "late")
        meta: Any = {"source": "loop", "step": 0, "parents": {}}
        async with store.checkpointer() as saver:
            first = empty_checkpoint()
            await saver.aput(checkpoint_config("late", lease), first, meta, {})
            reached, go = threading.Event(), threading.Event()

            def stall(execution_id: str) -> None:  # the saver's own hook point
                reached.set()
                go.wait(60)

            saver.between_slot_and_write = stall
            late = asyncio.create_task(saver.aput(
                checkpoint_config("late", lease, first["id"]), empty_checkpoint(), meta, {}))
            await until(reached, "the owner to stall between its slot and its write")
            saver.between_slot_and_write = None
            await take_over(store, "late")
            claimed = await store.get_run("late")
            assert claimed is not None and claimed.updated_at is not None
            successor = Lease("late", claimed.updated_at)
            # The next owner's first read seals the run, then sees the first checkpoint.
            seen = await saver.aget_tuple(checkpoint_config("late", successor))
            assert seen is not None and seen.checkpoint["id"] == first["id"]
            go.set()
            with pytest.raises(LeaseLost):
                await late
            assert await stored_checkpoints(saver, "late") == [(first["id"], 0)]
            mine = empty_checkpoint()
            await saver.aput(checkpoint_config("late", successor, first["id"]), mine, meta, {})
            assert [c for c, _ in await stored_checkpoints(saver, "late")] == [
                mine["id"], first["id"]]
    finally:
        await store.close()


@pytest.mark.parametrize("writes", [
    [("__error__", "first"), ("__error__", "second")],  # an error replaces an error
    [("x", 1), ("__error__", "first"), ("__error__", "second")],  # the first stays
])
async def test_a_fenced_task_writes_call_keeps_the_savers_rule_within_a_call(
        mongo_url: str, writes: list[tuple[str, Any]]) -> None:
    """A fenced call inserts its writes (its batch is new); it keeps what MongoDBSaver's
    upserts keep when one call writes one index twice."""
    from langgraph.checkpoint.base import empty_checkpoint

    from tests.app.test_fencing import checkpoint_config, owned
    store = MongoStore(mongo_url)
    try:
        _, lease = await owned(store, "rule")
        meta: Any = {"source": "loop", "step": 0, "parents": {}}
        kept = []
        async with store.checkpointer() as saver:
            for owner in (None, lease):
                checkpoint = empty_checkpoint()
                await saver.aput(checkpoint_config("rule", owner), checkpoint, meta, {})
                at = checkpoint_config("rule", owner, checkpoint["id"])
                await saver.aput_writes(at, writes, "task")
                seen = await saver.aget_tuple(at)
                assert seen is not None
                kept.append(seen.pending_writes)
        assert kept[1] == kept[0] and len(kept[0] or ()) == len(writes) - 1
    finally:
        await store.close()
