"""The live run record: how often a running run's record is written (counts)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowloom.app import execution
from flowloom.app.execution import LiveRecord
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

    async def save_run_with_events(self, record: RunRecord, events: list[Any],
                                   fence: Any = None) -> None:
        self.writes += 1
        self.clock.now += self.write_s

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


async def test_a_costly_record_is_written_at_most_a_fifth_of_the_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 1 s a write: at most one write per 5 s of run (20 s of events, plus the writes)
    writes = await writes_during_a_run(1.0, monkeypatch)
    assert 2 <= writes <= 6
