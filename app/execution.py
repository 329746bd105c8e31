"""Driving a run's graph in this process: live record, event log, cancel, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from langchain_core.runnables import RunnableConfig

from flowloom.app.records import (
    NodeState,
    RecordBuilder,
    RunError,
    RunRecord,
    kept_bytes,
    truncate_for_record,
    utcnow,
)
from flowloom.app.stores.base import Store
from flowloom.app.stores.errors import LeaseLost, StoreError
from flowloom.app.stores.lease import LEASE_KEY, Lease
from flowloom.app.workflows import compile_workflow, load_workflow, workflow_output
from flowloom.graphs.context import RunContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.events import RunEvent, WireEvent
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.spec import WorkflowSpec
from flowloom.nodes.services import Services

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
                await asyncio.sleep(pause)
        with contextlib.suppress(LeaseLost):
            await self.flush()

    async def watch(self, run_task: asyncio.Task[Any]) -> None:
        """Heartbeats, progress and cancel checks while the run goes. A store error never
        ends the watch (nor the run): it backs off and tries again."""
        failures = 0
        while not run_task.done():
            await asyncio.sleep(min(FLUSH_INTERVAL_S * 2 ** failures, 5.0))
            since = self.clock() - self.written_at  # every write is a heartbeat too
            # A large record (a foreach of 100,000 items: 28 MB of JSON) takes a while to
            # write: write it at most a tenth of the time, so writes grow with the run,
            # not its square, and its heartbeat waits as long, up to `beat_max_s`.
            spacing = max(FLUSH_INTERVAL_S, 9 * self.write_s)
            due = since >= min(max(HEARTBEAT_S, spacing), self.beat_max_s)
            try:
                if due or since >= spacing:
                    await self.flush(heartbeat=due)
                by = await self.store.cancel_requested(self.record.execution_id)
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


def _downstream(spec: WorkflowSpec, node_id: str) -> list[str]:
    seen: list[str] = []
    stack = [node_id]
    while stack:
        current = stack.pop()
        for edge in spec.edges:
            if edge.source == current and edge.target not in seen:
                seen.append(edge.target)
                stack.append(edge.target)
    return seen


def settle_unfinished(record: RunRecord, spec: WorkflowSpec, live: LiveRecord,
                      failed_node: str | None) -> None:
    """After a failed, timed-out or cancelled run: downstream of the failed node is
    `failed`, naming it; whatever was running or had not started is `cancelled`."""
    now = utcnow()
    states = record.node_states
    for node_id in list(live.builder.active):
        states[node_id].status, states[node_id].finished_at = "cancelled", now
    live.builder.active.clear()
    if failed_node is not None:
        for node_id in _downstream(spec, failed_node):
            if node_id not in states:
                states[node_id] = NodeState(status="failed", finished_at=now, error={
                    "type": "UpstreamFailed", "message": f"upstream node `{failed_node}` failed"})
    for node in spec.nodes:
        if node.id not in states or states[node.id].status == "waiting":
            states[node.id] = NodeState(status="cancelled", finished_at=now)


def initial_input(record: RunRecord) -> dict[str, Any]:
    started = record.started_at or utcnow()
    record.started_at = started
    return {"inputs": record.inputs, "run": {"id": record.execution_id,
                                             "workflow_id": record.workflow_id,
                                             "started_at": started.isoformat()}}


_GRAPHS: OrderedDict[tuple[Any, ...], tuple[Any, Expressions]] = OrderedDict()
GRAPH_CACHE_SIZE = 128
_SPECS: OrderedDict[bytes, WorkflowSpec] = OrderedDict()


def load_spec(document: Any) -> WorkflowSpec:
    """`load_workflow`, remembered per document content: the same stored version runs
    again and again, and validating it costs more than a short run's store writes.
    Raises SpecError like `load_workflow`; a loaded spec is never changed."""
    if isinstance(document, WorkflowSpec):
        return document
    if not isinstance(document, dict):  # a path or JSON text: read it afresh
        return load_workflow(document)
    # The digest of the document's canonical JSON: the cache holds no copy of its text.
    key = hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).digest()
    hit = _SPECS.get(key)
    if hit is None:
        hit = _SPECS[key] = load_workflow(document)
        while len(_SPECS) > GRAPH_CACHE_SIZE:
            _SPECS.popitem(last=False)
    _SPECS.move_to_end(key)
    return hit


def compiled_graph(spec: WorkflowSpec, record: RunRecord, saver: Any) -> tuple[Any, Expressions]:
    """A workflow version compiles once per process and saver: compiled graphs hold no
    run state (that lives in the checkpointer and the runtime context). The cached graph
    holds its saver, so the saver's id cannot be reused while the entry lives. A stored
    version is the content's identity: a store gives identical content its existing
    version, so runs, resumes, the API and queue workers of one content share one graph."""
    key = (record.workflow_id, record.workflow_version, id(saver))
    hit = _GRAPHS.get(key)
    if hit is None:
        expressions = Expressions()
        hit = _GRAPHS[key] = (compile_workflow(spec, saver, expressions=expressions),
                              expressions)
        while len(_GRAPHS) > GRAPH_CACHE_SIZE:
            _GRAPHS.popitem(last=False)
    _GRAPHS.move_to_end(key)
    return hit


async def drive(spec: WorkflowSpec, record: RunRecord, store: Store, services: Services,
                live: LiveRecord, graph_input: Any) -> None:
    """Run (or continue) the graph of `record` to its end or to a pause."""
    ctx = RunContext(record.execution_id, record.workflow_id, services, live.emit,
                     max_concurrency=spec.settings.max_concurrency, guard=live.guard,
                     max_state_bytes=services.settings.max_run_state_bytes,
                     state_bytes=kept_bytes(record))
    # The cap is the run's slots (RunContext.slot), not LangGraph's tasks per step: a
    # branch is one task however long it runs, and a cap on tasks would hold branches.
    # The lease rides in the config to every checkpoint write, subgraphs' included.
    config: RunnableConfig = {"configurable": {"thread_id": record.execution_id,
                                               LEASE_KEY: live.lease}}
    record.status, record.finished_at, record.waiting_for = "running", None, []
    log.info("run %s of %s v%s started", record.execution_id, record.workflow_id,
             record.workflow_version)
    live.emit({"event": "run.started"})
    await live.flush()  # readers see `running` at once
    async with store.checkpointer() as saver:
        graph, expressions = compiled_graph(spec, record, saver)
        if graph_input is None and await saver.aget_tuple(config) is None:
            graph_input = initial_input(record)  # stopped before its first checkpoint
        run_task = asyncio.create_task(graph.ainvoke(graph_input, config, context=ctx,
                                                     durability="sync"))
        watcher = asyncio.create_task(live.watch(run_task))
        try:
            state = await asyncio.wait_for(run_task, spec.settings.timeout_s)
            # A pause shows in the result: no second read of the checkpoint to find it.
            interrupts = state.get("__interrupt__") if isinstance(state, dict) else None
            if isinstance(state, dict):
                live.builder.settle_from_state(state)
            if interrupts:
                record.status = "waiting"
                record.waiting_for = [{**i.value, "interrupt_id": i.id} for i in interrupts]
                live.emit({"event": "run.waiting", "waiting_for": record.waiting_for})
            else:
                record.output = truncate_for_record(
                    await workflow_output(spec, state, expressions))
                record.status = "succeeded"
        except NodeError as exc:
            record.status = "failed"
            record.errors.append(RunError(node_id=exc.node_id, type=exc.kind,
                                          message=str(exc)))
            settle_unfinished(record, spec, live, exc.node_id)
        except TimeoutError:
            record.status = "failed"
            record.errors.append(RunError(type="TimeoutError", message=(
                f"run timed out after {spec.settings.timeout_s:g}s (settings.timeout_s)")))
            settle_unfinished(record, spec, live, None)
        except asyncio.CancelledError:
            if live.lost:
                log.warning("run %s: stopped here, another process owns it now",
                            record.execution_id)
                return
            if live.cancelled_by is None:  # we were cancelled from outside: pass it on
                run_task.cancel()
                raise
            record.status, record.cancelled_by = "cancelled", live.cancelled_by
            record.cancelled_at = utcnow()
            settle_unfinished(record, spec, live, None)
        except Exception as exc:  # the engine or the store gave up: the run failed, say how
            if live.lost:
                log.warning("run %s: stopped here, another process owns it now",
                            record.execution_id)
                return
            log.exception("run %s failed outside its nodes", record.execution_id)
            record.status = "failed"
            record.errors.append(RunError(type=type(exc).__name__, message=str(exc)))
            settle_unfinished(record, spec, live, None)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    if record.status != "waiting":
        record.finished_at = utcnow()
    log.info("run %s %s", record.execution_id, record.status)
    if record.finished:
        live.emit({"event": "run.finished", "status": record.status})
    await live.flush_final()
