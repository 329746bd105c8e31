"""The live record's watch: its heartbeat and progress writes to the tick, its back-off
through store errors, and cancel requests from anywhere."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from flowloom.app.lifecycle.live import LiveRecord
from flowloom.app.records import RunRecord
from tests.app.live_parts import FailingStore, Pauses, owned_live
from tests.app.test_live_record import Clock, SlowStore

TICK_S = 0.25  # the watch's interval; each of its pauses lets the run move the clock this much


async def watched(write_s: float, stale_after_s: float | None, *, chatty: bool) -> list[float]:
    """When the record is written (on the clock) while a run goes on for 12 s, emitting an
    event every tick if `chatty`. Times are binary fractions: the sums are exact."""
    clock = Clock()
    store = SlowStore(clock, write_s)
    stale = {} if stale_after_s is None else {"stale_after_s": stale_after_s}
    live = LiveRecord(store, RunRecord(execution_id="w", status="running"),  # type: ignore[arg-type]
                      0, None, **stale)  # type: ignore[arg-type]
    live.clock, live.sleep = clock, Pauses()
    await live.flush(heartbeat=True)  # as drive() does when the run starts

    async def run() -> None:
        while clock.now < 12:
            if chatty:
                live.emit({"event": "node.started", "node_id": "a", "attempt": 1})  # type: ignore[arg-type]
            clock.now += TICK_S
            await asyncio.sleep(0)

    await live.watch(asyncio.create_task(run()))
    return [round(b - a - write_s, 9) for a, b in itertools.pairwise(store.written_at)]


@pytest.mark.parametrize(("write_s", "stale_after_s", "gap"), [
    (0.0625, 10.0, 1.0),  # due after a second: written as soon as it is
    (0.5, 100.0, 4.5),  # a large record: nine times its write apart
    (0.5, 10.0, 2.5),  # but a quarter of the lease at most
    (1.0, None, 2.5),  # the lease is 10 s unless told
])
async def test_a_quiet_runs_heartbeat_is_written_the_tick_it_is_due(
        write_s: float, stale_after_s: float | None, gap: float) -> None:
    gaps = await watched(write_s, stale_after_s, chatty=False)
    assert len(gaps) >= 2 and set(gaps) == {gap}, gaps


async def test_a_busy_runs_progress_is_written_every_tick() -> None:
    gaps = await watched(0.0, 10.0, chatty=True)
    assert len(gaps) >= 40 and set(gaps) == {TICK_S}, gaps


async def test_the_watch_backs_off_through_store_errors_and_keeps_watching(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FailingStore(tmp_path / "runs.db")
    live = await owned_live(store, "r")
    live.clock = Clock()  # never due: each round only asks for cancels
    store.fail_checks = 7

    async def nine_checks() -> None:  # a run that ends after the 9th check (or by itself)
        for _ in range(1000):
            if store.checks >= 9:
                return
            await asyncio.sleep(0)

    run = asyncio.create_task(nine_checks())
    with caplog.at_level(logging.WARNING, "flowloom.run"):
        await live.watch(run)
    assert isinstance(live.sleep, Pauses)
    assert live.sleep.asked[:9] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 0.25]
    assert caplog.messages == [
        "run r: the store failed (disk I/O error); its record is written again shortly"] * 7
    assert run.done() and not run.cancelled()
    await store.close()


async def test_a_cancel_asked_anywhere_cancels_the_run_and_says_by_whom(
        tmp_path: Path) -> None:
    store = FailingStore(tmp_path / "runs.db")
    live = await owned_live(store, "c")
    live.clock = Clock()
    await store.request_cancel("c", "alice")

    async def ticks() -> None:  # a run that would end by itself after a few rounds
        for _ in range(20):
            await asyncio.sleep(0)

    run = asyncio.create_task(ticks())
    await live.watch(run)
    assert run.cancelled()
    assert live.cancelled_by == "alice"
    await store.close()
