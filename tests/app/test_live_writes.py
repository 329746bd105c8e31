"""The live record's writes: what a flush writes and when, the fence on the lease, the
guard before a node, the final write's retries, and taking the lease."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowloom.app.lifecycle import live as execution
from flowloom.app.lifecycle.live import LiveRecord
from flowloom.app.records import RunRecord
from flowloom.app.stores.errors import LeaseLost, StoreError
from tests.app.live_parts import FailingStore, Pauses, owned_live, take_over
from tests.app.test_live_record import Clock


async def stored_seqs(store: FailingStore, execution_id: str) -> list[int]:
    return [e["seq"] for e in await store.list_events(execution_id)]


async def test_a_flush_writes_only_what_is_new_unless_it_is_a_heartbeat(
        tmp_path: Path) -> None:
    store = FailingStore(tmp_path / "runs.db")
    live = await owned_live(store, "r")
    await live.flush()  # nothing emitted yet
    assert store.writes == 0
    live.emit({"event": "run.started"})
    await live.flush()
    await live.flush()  # nothing new since
    assert store.writes == 1
    await live.flush(heartbeat=True)
    assert store.writes == 2
    assert await stored_seqs(store, "r") == [1]
    await store.close()


async def test_an_emitted_event_names_its_run_and_when_it_happened(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []
    live = LiveRecord(FailingStore(tmp_path / "runs.db"),  # type: ignore[arg-type]
                      RunRecord(execution_id="r", status="running"), 4, seen.append)  # type: ignore[arg-type]
    live.emit({"event": "run.started"})
    assert [sorted(e) for e in seen] == [["at", "event", "execution_id", "seq"]]
    assert (seen[0]["seq"], seen[0]["execution_id"]) == (5, "r")
    assert isinstance(seen[0]["at"], float)


async def test_a_failed_write_leaves_its_events_for_the_next_flush(tmp_path: Path) -> None:
    store = FailingStore(tmp_path / "runs.db")
    live = await owned_live(store, "r")
    live.emit({"event": "run.started"})
    store.fail_writes = 1
    with pytest.raises(StoreError):
        await live.flush()
    await live.flush()  # not a heartbeat: the events still wait
    assert store.writes == 1
    assert await stored_seqs(store, "r") == [1]
    await store.close()


async def test_a_write_after_a_takeover_is_refused_and_the_owner_stops(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FailingStore(tmp_path / "runs.db")
    live = await owned_live(store, "own")
    await take_over(store, "own")
    live.record.status = "succeeded"
    live.emit({"event": "run.finished", "status": "succeeded"})
    with caplog.at_level(logging.WARNING, "flowloom.run"), pytest.raises(LeaseLost):
        await live.flush()
    assert caplog.messages == ["run own was taken over by another process; this one stops"]
    assert live.lost
    await live.flush(heartbeat=True)  # lost: nothing more is tried
    assert store.writes == 0
    with pytest.raises(LeaseLost, match=r"^run own was taken over$"):
        await live.guard()
    stored = await store.get_run("own")
    assert stored is not None and stored.status == "running"
    assert await stored_seqs(store, "own") == []
    await store.close()


async def test_the_fence_moves_forward_past_a_record_written_by_a_clock_ahead(
        tmp_path: Path) -> None:
    # The stored `updated_at` may be ahead of this host's clock (another host wrote it):
    # each write still moves it forward, by a tick (a millisecond, MongoDB's precision).
    ahead = datetime.now(UTC) + timedelta(hours=1)
    store = FailingStore(tmp_path / "runs.db")
    live = await owned_live(store, "r", created_at=ahead, updated_at=ahead)
    live.emit({"event": "run.started"})
    await live.flush()
    stored = await store.get_run("r")
    assert stored is not None and stored.updated_at == ahead + timedelta(milliseconds=1)
    await store.close()


async def test_taking_the_lease_fences_on_the_stored_record_and_names_the_owner(
        tmp_path: Path) -> None:
    store = FailingStore(tmp_path / "runs.db")
    updated = datetime.now(UTC) - timedelta(seconds=1)  # written since it was created
    live = await owned_live(store, "r", owner="someone-else:1",
                            created_at=updated - timedelta(minutes=1), updated_at=updated)
    assert live.record.owner == f"{socket.gethostname()}:{os.getpid()}"
    live.emit({"event": "run.started"})
    await live.flush()
    stored = await store.get_run("r")
    assert stored is not None and stored.owner == f"{socket.gethostname()}:{os.getpid()}"
    await take_over(store, "r")
    live.emit({"event": "node.started", "node_id": "a", "attempt": 1})  # type: ignore[arg-type]
    with pytest.raises(LeaseLost):
        await live.flush()
    assert await stored_seqs(store, "r") == [1]
    await store.close()


@pytest.mark.parametrize(("last_write", "now", "writes"), [
    (None, 2.5, 1),  # never written, and past the check: renewed
    (None, 1.5, 0),
    (10.0, 11.0, 0),  # written a second ago
    (10.0, 12.0, 0),  # exactly LEASE_CHECK_S: not yet
    (10.0, 12.5, 1),
])
async def test_a_node_starting_long_after_the_last_write_renews_the_lease_first(
        tmp_path: Path, last_write: float | None, now: float, writes: int) -> None:
    store = FailingStore(tmp_path / "runs.db")
    live = await owned_live(store, "r")
    live.clock = clock = Clock()
    if last_write is not None:
        clock.now = last_write
        await live.flush(heartbeat=True)
        store.writes = 0
    clock.now = now
    await live.guard()  # nothing new to tell: a heartbeat all the same
    assert store.writes == writes
    await store.close()


async def test_the_final_write_is_retried_through_store_errors(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FailingStore(tmp_path / "runs.db")
    live = await owned_live(store, "fin")
    live.record.status = "succeeded"
    live.emit({"event": "run.finished", "status": "succeeded"})
    store.fail_writes = 3  # every retry fails: the last try, after the pauses, lands
    with caplog.at_level(logging.WARNING, "flowloom.run"):
        await live.flush_final()
    assert isinstance(live.sleep, Pauses) and live.sleep.asked == [0.1, 0.5, 2.0]
    assert caplog.messages == [
        f"run fin: writing its outcome failed (disk I/O error); retrying in {pause} s"
        for pause in ("0.1", "0.5", "2")]
    stored = await store.get_run("fin")
    assert stored is not None and stored.status == "succeeded"
    assert await stored_seqs(store, "fin") == [1]
    await store.close()


async def test_a_final_write_refused_after_the_retries_gives_the_run_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execution, "FINAL_RETRY_S", (0, 0))
    store = FailingStore(tmp_path / "runs.db")
    live = await owned_live(store, "gone")
    live.emit({"event": "run.finished", "status": "succeeded"})
    store.fail_writes = 2
    await take_over(store, "gone")
    await live.flush_final()  # the last try is refused: the run is the new owner's
    assert live.lost
    assert await stored_seqs(store, "gone") == []
    await store.close()
