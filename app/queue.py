"""Scale-out on arq, an existing Redis task queue: the API enqueues runs, `flowloom worker`
processes run them. Every key arq uses carries the `flowloom:` prefix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker, func

from flowloom.app.api.manager import purge_forever, recover_forever
from flowloom.app.lifecycle import claim_found, recoverable_runs
from flowloom.app.records import RunRecord, utcnow
from flowloom.app.runner import MISSING, resume_workflow, spec_of, start_prepared
from flowloom.app.services import open_services
from flowloom.app.settings import Settings, load_settings
from flowloom.app.stores import open_store
from flowloom.app.stores.base import Store
from flowloom.app.tuning import freeze_startup_heap, thaw_heap
from flowloom.graphs import WorkflowSpec
from flowloom.nodes.services import Services

QUEUE_NAME = "flowloom:queue"
JOB_TIMEOUT = timedelta(days=7)  # a run's own timeout_s applies inside; this is a backstop
POLL_S = 0.1
log = logging.getLogger("flowloom.queue")


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


class QueueManager:
    """The API side: the same face as the in-process RunManager, but runs go to workers."""

    def __init__(self, store: Store, services: Services, queue_url: str,
                 stale_after_s: float) -> None:
        self.store = store
        self.services = services
        self.queue_url = queue_url
        self.stale_after = timedelta(seconds=stale_after_s)
        self.tasks: dict[str, asyncio.Task[Any]] = {}  # only enqueue calls in flight
        self.workers = "queue"
        self.pool: ArqRedis | None = None

    async def connect(self) -> None:
        self.pool = await create_pool(redis_settings(self.queue_url),
                                      default_queue_name=QUEUE_NAME)

    async def _enqueue(self, function: str, execution_id: str, job_id: str,
                       **kwargs: Any) -> None:
        assert self.pool is not None, "connect() first"
        await self.pool.enqueue_job(function, execution_id, _job_id=job_id, **kwargs)

    def start(self, record: RunRecord, spec: WorkflowSpec | None = None
              ) -> asyncio.Task[Any]:
        return asyncio.create_task(self._enqueue("run_execution", record.execution_id,
                                                 f"flowloom:run:{record.execution_id}"))

    def resume(self, execution_id: str, value: Any = MISSING, node_id: str | None = None,
               claim: tuple[str, datetime] | None = None) -> asyncio.Task[Any]:
        if claim is not None:  # an interrupted run: a worker claims and takes it over
            stamp = claim[1].timestamp()
            return asyncio.create_task(self._enqueue(
                "run_execution", execution_id, f"flowloom:recover:{execution_id}:{stamp}"))
        answer = None if value is MISSING else json.dumps(value)
        job = f"flowloom:resume:{execution_id}:{utcnow().timestamp()}"
        return asyncio.create_task(self._enqueue("resume_execution", execution_id, job,
                                                 answer=answer, node_id=node_id))

    async def wait(self, task: asyncio.Task[Any], wait_s: float,
                   execution_id: str | None = None) -> bool:
        """Whether the run finished or paused within `wait_s`, watching its record."""
        await task
        since = utcnow()  # a `waiting` written before this is the pause being answered
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            record = await self.store.get_run(execution_id or "")
            if record is None or record.finished:
                return True
            if record.status == "waiting" and (record.updated_at or since) > since:
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(POLL_S)

    async def recover(self) -> int:
        stale = await recoverable_runs(self.store, self.stale_after.total_seconds())
        for record in stale:
            # One job per stale state: several recoverers enqueue it only once.
            stamp = (record.updated_at or record.created_at).timestamp()
            await self._enqueue("run_execution", record.execution_id,
                                f"flowloom:recover:{record.execution_id}:{stamp}")
        return len(stale)

    async def keep_recovering(self) -> None:
        await recover_forever(self.recover)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()


# --- the worker side ---------------------------------------------------------------------

async def run_execution(ctx: dict[str, Any], execution_id: str) -> str:
    store: Store = ctx["store"]
    services: Services = ctx["services"]
    record = await store.get_run(execution_id)
    if record is None:
        return "nothing to do"
    refused = await claim_found(store, record, ctx["stale_after"].total_seconds())
    if refused is not None:
        return refused
    if record.status == "queued":
        done = await start_prepared(store, services, await spec_of(store, record), record,
                                    stale_after_s=ctx["stale_after"].total_seconds())
    else:  # `running` but orphaned: continue from its checkpoint
        done = await resume_workflow(execution_id, store=store, services=services,
                                     take_over=True, force=True)  # claimed just above
    return done.status


async def resume_execution(ctx: dict[str, Any], execution_id: str, answer: str | None,
                           node_id: str | None) -> str:
    value = MISSING if answer is None else json.loads(answer)
    # An answer from the API: the run waited or failed; one that runs now is left alone.
    done = await resume_workflow(execution_id, value, node_id=node_id, store=ctx["store"],
                                 services=ctx["services"], take_over=False)
    return done.status


def make_worker(settings: Settings | None = None, **overrides: Any) -> Worker:
    settings = settings or load_settings()
    if not settings.queue_url:
        raise ValueError("FLOWLOOM_QUEUE_URL is not set: there is no queue to work on")
    stack = AsyncExitStack()

    async def startup(ctx: dict[str, Any]) -> None:
        store = open_store(settings)
        stack.push_async_callback(store.close)
        ctx["store"] = store
        ctx["stale_after"] = timedelta(seconds=settings.stale_after_s)
        ctx["services"] = await stack.enter_async_context(open_services(settings))
        manager = QueueManager(store, ctx["services"], settings.queue_url or "",
                               settings.stale_after_s)
        await manager.connect()
        stack.push_async_callback(manager.close)
        recovering = asyncio.create_task(manager.keep_recovering())
        stack.callback(recovering.cancel)
        # Retention in every long-lived process: a deployment may run workers only.
        purging = asyncio.create_task(
            purge_forever(store, timedelta(days=settings.retention_days)))
        stack.callback(purging.cancel)
        freeze_startup_heap()
        stack.callback(thaw_heap)

    async def shutdown(ctx: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await stack.aclose()

    return Worker(
        functions=[func(run_execution, name="run_execution", max_tries=1),
                   func(resume_execution, name="resume_execution", max_tries=1)],
        redis_settings=redis_settings(settings.queue_url), queue_name=QUEUE_NAME,
        on_startup=startup, on_shutdown=shutdown, max_jobs=settings.workers,
        job_timeout=JOB_TIMEOUT, keep_result=3600, poll_delay=0.1,
        health_check_key="flowloom:worker:health", **overrides)
