"""Runs executed inside the API process, on a bounded pool, when no distributed queue is
configured; and the recovery of runs whose process stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from flowloom.app.lifecycle import claim_for_start, claim_seen, recoverable_runs
from flowloom.app.records import RunRecord, utcnow
from flowloom.app.runner import resume_workflow, spec_of, start_prepared
from flowloom.app.stores.base import Store
from flowloom.graphs import WorkflowSpec
from flowloom.nodes.services import Services

log = logging.getLogger("flowloom.api")
# A dead owner's run is stale at most FLOWLOOM_STALE_AFTER_S after its death; looked for
# this often, it is taken over within that + 1 s (bench/bench_fencing.py measures it).
RECOVER_EVERY_S = 1.0
RETENTION_EVERY_S = 3600.0


async def recover_forever(recover: Callable[[], Awaitable[int]]) -> None:
    """A run whose process died shows up stale a few heartbeats later: keep looking."""
    while True:
        await asyncio.sleep(RECOVER_EVERY_S)
        try:
            await recover()
        except Exception:  # a store hiccup must not end the loop
            log.exception("recovering unfinished runs failed")


async def purge_forever(store: Store, retention: timedelta) -> None:
    """Retention in a long-lived server: finished runs past `retention` go at the start and
    then every RETENTION_EVERY_S, not only once per process."""
    while True:
        try:
            await store.delete_runs_before(utcnow() - retention)
        except Exception:  # a store hiccup must not end the loop
            log.exception("deleting runs past their retention failed")
        await asyncio.sleep(RETENTION_EVERY_S)


class RunManager:
    def __init__(self, store: Store, services: Services, workers: int,
                 stale_after_s: float = 10.0) -> None:
        self.stale_after = timedelta(seconds=stale_after_s)
        self.store = store
        self.services = services
        self.workers = workers
        self.slots = asyncio.Semaphore(workers)
        self.tasks: dict[str, asyncio.Task[Any]] = {}

    def submit(self, execution_id: str, work: Callable[[], Awaitable[RunRecord | None]]
               ) -> asyncio.Task[Any]:
        async def guarded() -> RunRecord | None:
            async with self.slots:
                return await work()

        task = asyncio.create_task(guarded(), name=f"run {execution_id}")
        self.tasks[execution_id] = task
        task.add_done_callback(lambda t: self._done(execution_id, t))
        return task

    def _done(self, execution_id: str, task: asyncio.Task[Any]) -> None:
        if self.tasks.get(execution_id) is task:
            del self.tasks[execution_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("run %s stopped with an error: %s", execution_id, task.exception())

    async def wait(self, task: asyncio.Task[Any], wait_s: float,
                   execution_id: str | None = None) -> bool:
        """Whether the run finished (or paused) within `wait_s`; it goes on either way."""
        done, _ = await asyncio.wait({task}, timeout=wait_s)
        return bool(done)

    def start(self, record: RunRecord, spec: WorkflowSpec | None = None) -> asyncio.Task[Any]:
        """Run a queued record once a slot is free; `spec` is its workflow when the caller
        has it loaded. The run is claimed when it starts: if another process took it
        meanwhile, or it was cancelled, this task ends with None."""
        async def work() -> RunRecord | None:
            if not await claim_for_start(self.store, record):
                log.info("run %s was taken by another process or cancelled while queued",
                         record.execution_id)
                return None
            loaded = spec or await spec_of(self.store, record)
            return await start_prepared(self.store, self.services, loaded, record,
                                        stale_after_s=self.stale_after.total_seconds())
        return self.submit(record.execution_id, work)

    def resume(self, execution_id: str, claim: tuple[str, datetime] | None = None,
               **kwargs: Any) -> asyncio.Task[Any]:
        """Resume a run once a slot is free. `claim`: the (status, updated_at) it was seen
        with, stale, in the store: it is claimed first, and left alone if another
        process took it meanwhile."""
        async def work() -> RunRecord | None:
            if claim is not None and not await claim_seen(self.store, execution_id, claim):
                log.info("run %s was taken by another process", execution_id)
                return None
            return await resume_workflow(execution_id, store=self.store,
                                         services=self.services,
                                         take_over=claim is not None,
                                         force=claim is not None, **kwargs)
        return self.submit(execution_id, work)

    async def recover(self) -> int:
        """Start the queued runs and resume the running ones whose process is gone, so
        that no run is left stuck in `running`."""
        stale = await recoverable_runs(self.store, self.stale_after.total_seconds())
        for record in stale:
            if record.execution_id in self.tasks:
                continue
            if record.status == "queued":  # claimed when a slot frees up
                log.info("starting run %s, queued in a stopped or busy process",
                         record.execution_id)
                self.start(record)
                continue
            log.info("recovering run %s (%s)", record.execution_id, record.status)
            self.resume(record.execution_id,  # claimed when a slot frees up
                        claim=(record.status, record.updated_at or record.created_at))
        return len(stale)

    async def keep_recovering(self) -> None:
        await recover_forever(self.recover)

    async def close(self) -> None:
        # Runs cut off here keep their checkpoints and are resumed at the next start.
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
