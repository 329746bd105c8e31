"""Driving a run's graph in this process: its outcome, pauses and cancels; the live
record and its lease are lifecycle/live.py's."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import OrderedDict
from typing import Any

import orjson
from langchain_core.runnables import RunnableConfig

from flowloom.app.lifecycle.live import LiveRecord
from flowloom.app.records import (
    NodeState,
    RunError,
    RunRecord,
    kept_bytes,
    truncate_for_record,
    utcnow,
)
from flowloom.app.stores.base import Store
from flowloom.app.stores.lease import LEASE_KEY
from flowloom.app.workflows import compile_workflow, load_workflow, workflow_output
from flowloom.graphs.context import RunContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.spec import WorkflowSpec
from flowloom.nodes.services import Services

log = logging.getLogger("flowloom.run")


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
_BY_CONTENT: OrderedDict[bytes, tuple[Any, Expressions]] = OrderedDict()  # the first saver's


def load_spec(document: Any) -> WorkflowSpec:
    """`load_workflow`, remembered per document content: the same stored version runs
    again and again, and validating it costs more than a short run's store writes.
    Raises SpecError like `load_workflow`; a loaded spec is never changed."""
    if isinstance(document, WorkflowSpec):
        return document
    if not isinstance(document, dict):  # a path or JSON text: read it afresh
        return load_workflow(document)
    # The digest of the document's canonical JSON: the cache holds no copy of its text.
    key = hashlib.sha256(_sorted_json(document)).digest()
    hit = _SPECS.get(key)
    if hit is None:
        hit = _SPECS[key] = load_workflow(document)
        while len(_SPECS) > GRAPH_CACHE_SIZE:
            _SPECS.popitem(last=False)
    _SPECS.move_to_end(key)
    return hit


def _sorted_json(document: dict[str, Any]) -> bytes:
    try:  # orjson: a tenth of the time, on every call of the Python API and the HTTP API
        text = orjson.dumps(document, default=str,
                            option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # what orjson refuses (integers past 64 bits): the standard way
        return json.dumps(document, sort_keys=True, default=str).encode()
    if b"null" not in text:
        return text
    # orjson writes NaN and Infinity as null too, and a document holding one (refused)
    # must not share the key of its twin with null (valid): the standard way tells them apart
    try:
        return json.dumps(document, sort_keys=True, default=str).encode()
    except TypeError:  # keys of mixed types, which it cannot sort
        return text


def compiled_graph(spec: WorkflowSpec, record: RunRecord, saver: Any) -> tuple[Any, Expressions]:
    """A workflow version compiles once per process: compiled graphs hold no run state
    (that lives in the checkpointer and the runtime context), so a graph of the same
    content made for another saver (a store per event loop: each `run_workflow` call) is
    copied with this one, its templates compiled already. The cached graph holds its
    saver, so the saver's id cannot be reused while the entry lives. A stored version is
    the content's identity: a store gives identical content its existing version, so
    runs, resumes, the API and queue workers of one content share one graph."""
    key = (record.workflow_id, record.workflow_version, id(saver))
    hit = _GRAPHS.get(key)
    if hit is None:
        content = hashlib.sha256(_sorted_json(spec.model_dump(mode="json"))).digest()
        first = _BY_CONTENT.get(content)
        if first is None:
            expressions = Expressions()
            hit = first = (compile_workflow(spec, saver, expressions=expressions), expressions)
            _BY_CONTENT[content] = first
        else:  # subgraphs take the saver of the graph running them: only this one changes
            hit = (first[0].copy({"checkpointer": saver}), first[1])
        _GRAPHS[key] = hit
        for cache in (_GRAPHS, _BY_CONTENT):
            while len(cache) > GRAPH_CACHE_SIZE:
                cache.popitem(last=False)
        _BY_CONTENT.move_to_end(content)
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
