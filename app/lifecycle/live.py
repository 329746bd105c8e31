"""A run's heartbeat and its owner's writes: the live record, fenced on the lease.

The driving process folds events into the record and writes both as the run goes, so a
reader sees a running run's progress. Every write is conditional on the lease (the
run's `updated_at` as this owner left it): a process that took the run over changed it,
and this one stops. The watch beats the heartbeat, survives store hiccups (backing off)
and notices cancel requests from anywhere; the last write is retried, so the stored
outcome is the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flowloom.app.lifecycle.claims import cancel_asked, this_process
from flowloom.app.records import RecordBuilder, RunRecord, utcnow
from flowloom.app.stores.base import Store
from flowloom.app.stores.errors import LeaseLost, StoreError
from flowloom.app.stores.lease import Lease
from flowloom.graphs.events import RunEvent, WireEvent

EventCallback = Callable[[WireEvent], None]
log = logging.getLogger("flowloom.run")
FLUSH_INTERVAL_S = 0.25
FINAL_RETRY_S = (0.1, 0.5, 2.0)
LEASE_CHECK_S = 2.0  # a node starting this long after the last write renews the lease first
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TICK = timedelta(microseconds=1000)  # fenced writes move `updated_at` (MongoDB keeps ms)
HEARTBEAT_S = 1.0  # a running record is rewritten this often (more for large ones: watch())



class LiveRecord:
    """Folds events into the record and writes both to the store as the run goes, so a
    reader sees a running run's progress; also notices cancel requests from anywhere."""

    def __init__(self, store: Store, record: RunRecord, next_seq: int,
                 on_event: EventCallback | None, *, stale_after_s: float = 10.0) -> None:
        self.store = store
        self.record = record
        self.builder = RecordBuilder(record)
        self.seq = next_seq
        self.pending: list[WireEvent] = []
        self.on_event = on_event
        self.cancelled_by: str | None = None
        self.dirty = False
        # Ownership: every write (record, events, checkpoints) is conditional on the
        # run's `updated_at` as this process last wrote it; a process that took the run
        # over changed it, and we stop.
        self.lease = Lease(record.execution_id)
        self.lock = asyncio.Lock()
        self.clock = time.monotonic
        # the watch's pauses and the final write's retries (tests record them)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.written_at = 0.0  # drive() writes the record as the run starts
        self.write_s = 0.0  # how long the last write of the record took
        # Another process counts the run as orphaned once its record is `stale_after_s`
        # old: every write renews it, and a quarter of that is the longest gap allowed.
        self.beat_max_s = max(HEARTBEAT_S, stale_after_s / 4)

    @property
    def lost(self) -> bool:
        return self.lease.lost

    def emit(self, event: RunEvent) -> None:
        self.seq += 1
        recorded: WireEvent = {"seq": self.seq, "execution_id": self.record.execution_id,
                               "at": time.time(), **event}  # type: ignore[typeddict-item]
        self.builder.apply(recorded)
        self.pending.append(recorded)
        self.dirty = True
        if self.on_event is not None:
            self.on_event(recorded)

    async def flush(self, *, heartbeat: bool = False) -> None:
        async with self.lock:
            if self.lost or (not self.dirty and not heartbeat):
                return
            self.dirty = False
            token = max(utcnow(), (self.lease.latest or EPOCH) + TICK)
            self.record.updated_at = token
            events, self.pending = self.pending, []
            fence = self.lease.moving_to(token)
            started = self.clock()
            try:
                await self.store.save_run_with_events(self.record, events, fence=fence or None)
            except LeaseLost:
                self.lease.lost = True
                log.warning("run %s was taken over by another process; this one stops",
                            self.record.execution_id)
                raise
            except BaseException:
                # Not written, or written unheard of (a cancelled wait, a lost answer):
                # `token` stays one of ours, and the events go with the next flush.
                self.pending = events + self.pending
                self.dirty = True
                raise
            self.lease.moved_to(token)
            self.written_at = self.clock()
            self.write_s = self.written_at - started

    async def guard(self) -> None:
        """Before a node starts: if this process has not written the run for a while (its
        loop stalled, it was stopped), renew the lease by writing now; a run another
        process took over meanwhile raises LeaseLost, and nothing new starts here."""
        if self.lost:
            raise LeaseLost(f"run {self.record.execution_id} was taken over")
        if self.clock() - self.written_at > LEASE_CHECK_S:
            await self.flush(heartbeat=True)

    async def flush_final(self) -> None:
        """The last write of a run: retried through a store hiccup, so the real outcome
        is what stays (a record left `running` would be run again by recovery)."""
        for pause in FINAL_RETRY_S:
            try:
                return await self.flush()
            except LeaseLost:
                return  # the run is another process's now: its outcome is theirs to write
            except StoreError as exc:
                log.warning("run %s: writing its outcome failed (%s); retrying in %g s",
                            self.record.execution_id, exc, pause)
                await self.sleep(pause)
        with contextlib.suppress(LeaseLost):
            await self.flush()

    async def watch(self, run_task: asyncio.Task[Any]) -> None:
        """Heartbeats, progress and cancel checks while the run goes. A store error never
        ends the watch (nor the run): it backs off and tries again."""
        failures = 0
        while not run_task.done():
            await self.sleep(min(FLUSH_INTERVAL_S * 2 ** failures, 5.0))
            since = self.clock() - self.written_at  # every write is a heartbeat too
            # A large record (a foreach of 100,000 items: 28 MB of JSON) takes a while to
            # write: write it at most a tenth of the time, so writes grow with the run,
            # not its square, and its heartbeat waits as long, up to `beat_max_s`.
            spacing = max(FLUSH_INTERVAL_S, 9 * self.write_s)
            due = since >= min(max(HEARTBEAT_S, spacing), self.beat_max_s)
            try:
                if due or since >= spacing:
                    await self.flush(heartbeat=due)
                by = await cancel_asked(self.store, self.record.execution_id)
            except LeaseLost:
                run_task.cancel()
                return
            except StoreError as exc:
                failures = min(failures + 1, 5)
                log.warning("run %s: the store failed (%s); its record is written again "
                            "shortly", self.record.execution_id, exc)
                continue
            failures = 0
            if by is not None and self.cancelled_by is None:
                self.cancelled_by = by
                run_task.cancel()


async def take_lease(store: Store, live: LiveRecord) -> None:
    """Before the first write of a run this process claimed or created: fence every
    write on what the store holds now (our claim or our creation is the last write), so
    a later claim by anyone else stops this process; and name this process as owner, for
    anyone refused a takeover meanwhile."""
    record = live.record
    stored = await store.get_run(record.execution_id)
    if stored is not None:
        record.updated_at = stored.updated_at or stored.created_at
        live.lease.moved_to(record.updated_at)
    record.owner = this_process()
