"""The live run record: how often a running run's record is written (counts)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from flowloom.app.lifecycle import live as execution
from flowloom.app.lifecycle.live import LiveRecord
from flowloom.app.records import RunRecord


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowStore:
    """Each record write takes `write_s` on the clock, as a large record does."""

    def __init__(self, clock: Clock, write_s: float) -> None:
        self.clock, self.write_s, self.writes = clock, write_s, 0
        self.written_at: list[float] = []  # on the clock, when each write ended

    async def save_run_with_events(self, record: RunRecord, events: list[Any],
                                   fence: Any = None) -> None:
        self.writes += 1
        self.clock.now += self.write_s
        self.written_at.append(self.clock.now)

    async def cancel_requested(self, execution_id: str) -> str | None:
        return None


async def writes_during_a_run(write_s: float, monkeypatch: pytest.MonkeyPatch) -> int:
    """Record writes while a run emits an event every 0.25 s for 20 s (on the clock)."""
    monkeypatch.setattr(execution, "FLUSH_INTERVAL_S", 0)
    monkeypatch.setattr(execution, "HEARTBEAT_S", 1_000)
    clock = Clock()
    store = SlowStore(clock, write_s)
    live = LiveRecord(store, RunRecord(execution_id="big", status="running"),  # type: ignore[arg-type]
                      0, None)
    live.clock = clock

    async def run() -> None:
        for _ in range(80):
            live.emit({"event": "node.started", "node_id": "each[0].x"})  # type: ignore[typeddict-item]
            clock.now += 0.25
            await asyncio.sleep(0)

    task = asyncio.create_task(run())
    await live.watch(task)
    return store.writes


async def test_a_cheap_record_is_written_every_interval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert await writes_during_a_run(0.01, monkeypatch) >= 70


async def test_a_costly_record_is_written_at_most_a_tenth_of_the_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 1 s a write: at most one write per 10 s of run (20 s of events, plus the writes)
    writes = await writes_during_a_run(1.0, monkeypatch)
    assert 2 <= writes <= 3


def test_the_checkpoint_completes_node_states_whose_events_were_lost() -> None:
    from flowloom.app.records import NodeState, RecordBuilder
    record = RunRecord(execution_id="r", workflow_id="w", status="running")
    record.node_states["done"] = NodeState(status="succeeded", output="kept", attempts=2)
    record.node_states["cut"] = NodeState(status="running", attempts=1)
    builder = RecordBuilder(record)
    builder.active.add("cut")
    builder.settle_from_state({
        "outputs": {"done": "other", "cut": "C", "lost": "L", "gone": None},
        "nodes": {"done": {"status": "succeeded", "ports": ["out"]},
                  "cut": {"status": "succeeded", "ports": ["out"]},
                  "lost": {"status": "succeeded", "ports": ["out"]},
                  "gone": {"status": "skipped", "ports": []}}})
    states = record.node_states
    assert {n: (s.status, s.output) for n, s in states.items()} == {
        "done": ("succeeded", "kept"), "cut": ("succeeded", "C"), "lost": ("succeeded", "L"),
        "gone": ("skipped", None)}
    assert states["done"].attempts == 2 and states["cut"].attempts == 1
    assert builder.active == set()


def test_a_foreach_count_and_a_rendered_config_reach_the_record() -> None:
    from flowloom.app.records import RecordBuilder
    record = RunRecord(execution_id="r", workflow_id="w", status="running")
    builder = RecordBuilder(record)
    builder.apply({"event": "node.started", "node_id": "each", "attempt": 1, "at": 1.0,
                   "items_total": 4})
    assert record.node_states["each"].items_total == 4  # while it runs
    builder.apply({"event": "node.failed", "node_id": "each", "at": 2.0, "handled": False,
                   "error": {"type": "E", "message": "m"}, "meta": {"attempts": 1}})
    assert record.node_states["each"].items_total == 4  # kept when it settles
    builder.apply({"event": "node.started", "node_id": "each", "attempt": 1, "at": 3.0})
    builder.apply({"event": "node.started", "node_id": "each", "attempt": 2, "at": 3.5,
                   "items_total": 5})  # a resumed run's second start
    assert record.node_states["each"].items_total == 5
    builder.apply({"event": "node.started", "node_id": "each", "attempt": 3, "at": 3.6})
    assert record.node_states["each"].items_total == 5  # a start that does not say keeps it
    builder.apply({"event": "node.succeeded", "node_id": "each", "attempt": 2, "at": 4.0,
                   "output": [1], "meta": {"items": 6, "config": {"items": [1]}}})
    assert record.node_states["each"].items_total == 6
    assert record.node_states["each"].config == {"items": [1]}
    builder.apply({"event": "node.succeeded", "node_id": "x", "attempt": 1, "at": 4.0,
                   "output": 1, "meta": {}})
    assert record.node_states["x"].items_total is None
    assert record.node_states["x"].config is None


async def test_a_write_cut_off_by_a_cancel_still_moves_the_fence(tmp_path: Any) -> None:
    # SQLite's group commit commits a write whose caller was cancelled (the watcher is
    # cancelled as a run ends). The owner's next, final write must still match what the
    # store holds, or it would take itself for a stranger and leave the run `running`.
    from flowloom.app.stores.sqlite import SqliteStore
    store = SqliteStore(tmp_path / "runs.db")
    record = RunRecord(execution_id="cut", workflow_id="w", status="running")
    assert await store.create_run(record)
    live = LiveRecord(store, record, 0, None)
    live.lease.moved_to(record.updated_at or record.created_at)
    live.emit({"event": "run.started"})
    flushing = asyncio.ensure_future(live.flush())
    await asyncio.sleep(0)  # the write is queued for the next commit
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    record.status = "succeeded"
    live.emit({"event": "run.finished", "status": "succeeded"})
    await live.flush_final()
    assert not live.lost
    stored = await store.get_run("cut")
    assert stored is not None and stored.status == "succeeded"
    assert [e["seq"] for e in await store.list_events("cut")] == [1, 2]
    await store.close()


async def heartbeats(write_s: float, stale_after_s: float, monkeypatch: pytest.MonkeyPatch
                     ) -> list[float]:
    """When the record is written while a run with nothing new to tell goes on for 30 s
    (on the clock)."""
    monkeypatch.setattr(execution, "FLUSH_INTERVAL_S", 0)  # the watch looks every tick
    clock = Clock()
    store = SlowStore(clock, write_s)
    live = LiveRecord(store, RunRecord(execution_id="quiet", status="running"),  # type: ignore[arg-type]
                      0, None, stale_after_s=stale_after_s)
    live.clock = clock
    await live.flush(heartbeat=True)  # as drive() does when the run starts

    async def run() -> None:
        while clock.now < 30:
            clock.now += 0.25
            await asyncio.sleep(0)

    await live.watch(asyncio.create_task(run()))
    return store.written_at


@pytest.mark.parametrize(("write_s", "stale_after_s", "gap"), [
    (0.01, 10.0, 1.0),  # a small record: every second, as ever
    (1.0, 10.0, 2.5),  # a large one waits longer, a quarter of the lease at most
    (1.0, 2.0, 1.0),  # however large, never past a quarter of a short lease (nor under 1 s)
])
async def test_the_heartbeat_keeps_well_inside_the_lease(
        write_s: float, stale_after_s: float, gap: float,
        monkeypatch: pytest.MonkeyPatch) -> None:
    written = await heartbeats(write_s, stale_after_s, monkeypatch)
    # from the end of one write to the end of the next: the gap, at most a tick (0.25 s)
    # more before the watch sees it is due, and the write itself
    gaps = [round(b - a - write_s, 6) for a, b in itertools.pairwise(written)]
    assert len(gaps) >= 30 / (gap + 0.25 + write_s) - 1
    assert all(gap <= g <= gap + 0.25 for g in gaps), gaps
