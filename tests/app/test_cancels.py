"""Cancels decided in app/lifecycle/claims.py, called directly on a real SQLite store:
who is named, which child runs are cancelled with their parent, and a cancel that races
a claim. (Claims and takeovers: test_claims.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from flowloom.app.lifecycle.claims import NotResumable, RunNotFound, cancel_child, cancel_run
from flowloom.app.records import NodeState, RunRecord, utcnow
from flowloom.app.stores.sqlite import SqliteStore


async def stored(store: SqliteStore, execution_id: str, status: str,
                 children: dict[str, str | None] | None = None,
                 parent: str | None = None) -> RunRecord:
    """A run last written a minute ago; `children` maps node ids to child run ids (None:
    a node with no child run)."""
    at = utcnow() - timedelta(seconds=60)
    states = {node: NodeState(status="waiting" if child else "succeeded",  # type: ignore[arg-type]
                              child_execution_id=child)
              for node, child in (children or {}).items()}
    run = RunRecord(execution_id=execution_id, workflow_id="w", workflow_version=1,
                    status=status, created_at=at, updated_at=at,  # type: ignore[arg-type]
                    node_states=states, parent_execution_id=parent)
    await store.save_run(run)
    return run


async def state(store: SqliteStore, execution_id: str) -> tuple[str, str | None, str | None]:
    """A run's status, who cancelled it, and who asked it to cancel."""
    run = await store.get_run(execution_id)
    assert run is not None
    return run.status, run.cancelled_by, await store.cancel_requested(execution_id)


async def test_cancel_refuses_missing_and_finished_runs(store: SqliteStore) -> None:
    with pytest.raises(RunNotFound) as missing:
        await cancel_run(store, "nope", "alice")
    assert str(missing.value) == "no run with execution id `nope`"
    await stored(store, "done", "succeeded")
    with pytest.raises(NotResumable) as done:
        await cancel_run(store, "done", "alice")
    assert str(done.value) == "execution `done` already succeeded"


async def test_a_running_run_is_asked_to_stop_not_cancelled_here(store: SqliteStore) -> None:
    await stored(store, "r", "running")
    returned = await cancel_run(store, "r", "alice")
    assert returned.status == "running"
    assert await state(store, "r") == ("running", None, "alice")


async def test_a_waiting_run_is_cancelled_with_its_unfinished_children(store: SqliteStore
                                                                        ) -> None:
    # Node order matters: a node with no child run, then a finished child, come first.
    await stored(store, "p", "waiting", {"a": None, "done": "p.done", "sub": "p.sub",
                                         "queued": "p.q"})
    await stored(store, "p.done", "succeeded", parent="p")
    await stored(store, "p.sub", "waiting", {"b": None, "subsub": "p.sub.x"}, parent="p")
    await stored(store, "p.sub.x", "running", parent="p.sub")
    await stored(store, "p.q", "queued", parent="p")
    returned = await cancel_run(store, "p", "alice")
    assert (returned.status, returned.cancelled_by) == ("cancelled", "alice")
    assert await state(store, "p") == ("cancelled", "alice", "alice")
    assert await state(store, "p.sub") == ("cancelled", "alice", "alice")
    assert await state(store, "p.sub.x") == ("cancelled", "alice", "alice")
    assert await state(store, "p.q") == ("cancelled", "alice", "alice")
    assert await state(store, "p.done") == ("succeeded", None, None)


Meanwhile = Callable[[SqliteStore, str, datetime], Awaitable[None]]


class RacingStore(SqliteStore):
    """A real SQLite store on which another process acts on the run just before a
    cancel's compare-and-set reaches it."""

    def __init__(self, path: Path, meanwhile: Meanwhile) -> None:
        super().__init__(path)
        self.meanwhile = meanwhile
        self.raced = False

    async def save_run_if(self, record: RunRecord, seen_status: str,
                          seen_updated_at: datetime) -> bool:
        if not self.raced:
            self.raced = True
            await self.meanwhile(self, seen_status, seen_updated_at)
        return await super().save_run_if(record, seen_status, seen_updated_at)


async def answered(store: SqliteStore, seen_status: str, seen_updated_at: datetime) -> None:
    """An answer resumes the run: its claim clears the cancel request of a waiting run."""
    assert await store.claim_run("r", seen_status, seen_updated_at)


async def finished(store: SqliteStore, seen_status: str, seen_updated_at: datetime) -> None:
    run = await store.get_run("r")
    assert run is not None
    run.status, run.updated_at = "succeeded", utcnow()
    await store.save_run(run)


async def deleted(store: SqliteStore, seen_status: str, seen_updated_at: datetime) -> None:
    """The run ends elsewhere and retention deletes it at once."""
    await finished(store, seen_status, seen_updated_at)
    assert await store.delete_runs_before(utcnow()) == 1


CancelInARace = Callable[[Meanwhile, str], Awaitable[tuple[RacingStore, RunRecord]]]


@pytest.fixture
async def cancel_in_a_race(tmp_path: Path) -> AsyncIterator[CancelInARace]:
    """Alice cancels run `r`, stored with a status, while `meanwhile` acts on it."""
    stores: list[RacingStore] = []

    async def cancel(meanwhile: Meanwhile, status: str) -> tuple[RacingStore, RunRecord]:
        store = RacingStore(tmp_path / f"race{len(stores)}.db", meanwhile)
        stores.append(store)
        await stored(store, "r", status)
        return store, await cancel_run(store, "r", "alice")

    yield cancel
    for store in stores:
        await store.close()


async def test_a_cancel_that_loses_to_an_answer_asks_the_new_owner_to_stop(
        cancel_in_a_race: CancelInARace) -> None:
    store, returned = await cancel_in_a_race(answered, "waiting")
    assert store.raced
    assert (returned.status, returned.cancelled_by) == ("running", None)
    assert await state(store, "r") == ("running", None, "alice")


async def test_a_cancel_that_loses_to_the_end_of_the_run_returns_that_end(
        cancel_in_a_race: CancelInARace) -> None:
    store, returned = await cancel_in_a_race(finished, "queued")
    assert (returned.status, returned.cancelled_by) == ("succeeded", None)
    assert (await state(store, "r"))[:2] == ("succeeded", None)


async def test_a_cancel_of_a_run_deleted_meanwhile_returns_what_it_saw(
        cancel_in_a_race: CancelInARace) -> None:
    store, returned = await cancel_in_a_race(deleted, "queued")
    assert (returned.execution_id, returned.status) == ("r", "cancelled")
    assert await store.get_run("r") is None


async def test_a_child_left_running_is_cancelled_for_its_parent(store: SqliteStore) -> None:
    await stored(store, "p", "failed")
    await stored(store, "p.sub", "running", parent="p")
    await cancel_child(store, "p.sub", "p")
    assert await state(store, "p.sub") == ("cancelled", "parent p", "parent p")


async def test_a_child_left_running_names_who_cancelled_an_ancestor(store: SqliteStore
                                                                     ) -> None:
    await stored(store, "p", "running", parent="root")
    await stored(store, "root", "running")
    await store.request_cancel("root", "alice")
    await stored(store, "p.sub", "running", parent="p")
    await cancel_child(store, "p.sub", "p")
    assert await state(store, "p.sub") == ("cancelled", "alice", "alice")
    # Even a request naming no one is passed on as it is.
    await store.request_cancel("root", "")
    await stored(store, "p.sub2", "running", parent="p")
    await cancel_child(store, "p.sub2", "p")
    assert await state(store, "p.sub2") == ("cancelled", "", "")


async def test_a_finished_or_missing_child_is_left_as_it_is(store: SqliteStore) -> None:
    await stored(store, "p", "failed")
    await stored(store, "p.sub", "succeeded", parent="p")
    await cancel_child(store, "p.sub", "p")
    await cancel_child(store, "p.gone", "p")
    assert await state(store, "p.sub") == ("succeeded", None, None)
    assert await store.get_run("p.gone") is None
