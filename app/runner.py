"""Starting runs in this process: validate, pin the workflow version, run, record."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from jsonschema import Draft202012Validator
from langchain_core.runnables import RunnableConfig

from app.records import (
    NodeState,
    RecordBuilder,
    RunError,
    RunRecord,
    truncate_for_record,
    utcnow,
)
from app.services import open_services
from app.settings import Settings, load_settings
from app.stores import Store, open_store
from graphs import Expressions, InputError, NodeError, WorkflowError, WorkflowSpec, load_workflow
from graphs.compile import compile_workflow
from graphs.state import workflow_output
from nodes.context import RunContext, Services

MAX_INPUT_BYTES = 256 * 1024
T = TypeVar("T")
EventCallback = Callable[[dict[str, Any]], None]


def check_inputs(spec: WorkflowSpec, inputs: dict[str, Any]) -> None:
    """Raise InputError naming the failing JSON path when inputs do not fit the schema."""
    size = len(json.dumps(inputs, default=str).encode())
    if size > MAX_INPUT_BYTES:
        raise InputError("$", f"inputs are {size:,} bytes; the limit is {MAX_INPUT_BYTES:,}")
    if spec.inputs_schema is None:
        return
    validator = Draft202012Validator(spec.inputs_schema)
    error = next(iter(sorted(validator.iter_errors(inputs), key=lambda e: list(e.path))), None)
    if error is not None:
        raise InputError(error.json_path, error.message)


def workflow_id_of(spec: WorkflowSpec, document: dict[str, Any]) -> str:
    """The document's id, or a stable one derived from its content for inline workflows."""
    if spec.id:
        return spec.id
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    return f"inline-{digest[:12]}"


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


def _settle_unfinished(record: RunRecord, spec: WorkflowSpec, builder: RecordBuilder,
                       failed_node: str | None) -> None:
    """After a failed or timed-out run: downstream of the failed node is `failed`, naming
    it; whatever was running or had not started is `cancelled`."""
    now = utcnow()
    states = record.node_states
    for node_id in list(builder.active):
        states[node_id].status, states[node_id].finished_at = "cancelled", now
    if failed_node is not None:
        for node_id in _downstream(spec, failed_node):
            if node_id not in states:
                states[node_id] = NodeState(status="failed", finished_at=now, error={
                    "type": "UpstreamFailed", "message": f"upstream node `{failed_node}` failed"})
    for node in spec.nodes:
        if node.id not in states:
            states[node.id] = NodeState(status="cancelled", finished_at=now)


async def _drive(spec: WorkflowSpec, record: RunRecord, store: Store, services: Services,
                 emit: EventCallback, builder: RecordBuilder) -> None:
    expressions = Expressions()
    ctx = RunContext(record.execution_id, record.workflow_id, services, emit)
    run_info = {"id": record.execution_id, "workflow_id": record.workflow_id,
                "started_at": record.started_at.isoformat() if record.started_at else None}
    config: RunnableConfig = {"configurable": {"thread_id": record.execution_id},
                              "max_concurrency": spec.settings.max_concurrency}
    async with store.checkpointer() as saver:
        graph = compile_workflow(spec, saver, expressions=expressions)
        try:
            async with asyncio.timeout(spec.settings.timeout_s):
                state = await graph.ainvoke({"inputs": record.inputs, "run": run_info},
                                            config, context=ctx, durability="sync")
            record.output = truncate_for_record(workflow_output(spec, state, expressions))
            record.status = "succeeded"
        except NodeError as exc:
            failed = exc.node_id
            record.status = "failed"
            record.errors.append(RunError(node_id=failed, type=exc.kind, message=str(exc)))
            _settle_unfinished(record, spec, builder, failed)
        except TimeoutError:
            record.status = "failed"
            record.errors.append(RunError(type="TimeoutError", message=(
                f"run timed out after {spec.settings.timeout_s:g}s (settings.timeout_s)")))
            _settle_unfinished(record, spec, builder, None)


async def execute_workflow_async(
    document: Any,
    inputs: dict[str, Any] | None = None,
    *,
    execution_id: str | None = None,
    settings: Settings | None = None,
    store: Store | None = None,
    services: Services | None = None,
    on_event: EventCallback | None = None,
    correlation_id: str | None = None,
) -> RunRecord:
    """Run a workflow (any dialect) to the end in this process; returns its run record.

    Raises SpecError for an invalid document and InputError for inputs that do not fit
    `inputs_schema`, before anything is stored or run.
    """
    spec = load_workflow(document)
    inputs = dict(inputs or {})
    check_inputs(spec, inputs)
    settings = settings or load_settings()
    own_store = store is None
    store = store or open_store(settings)
    try:
        canonical = spec.model_dump(mode="json", exclude_none=True)
        workflow_id = workflow_id_of(spec, canonical)
        stored = await store.put_workflow(workflow_id, canonical)
        execution_id = execution_id or uuid.uuid4().hex
        if await store.get_run(execution_id) is not None:
            raise WorkflowError(f"execution `{execution_id}` already exists; "
                                "use `flowloom resume` to continue it")
        record = RunRecord(execution_id=execution_id, workflow_id=workflow_id,
                           workflow_version=stored.version, status="running", inputs=inputs,
                           started_at=utcnow(), correlation_id=correlation_id)
        await store.save_run(record)
        builder = RecordBuilder(record)

        def emit(event: dict[str, Any]) -> None:
            builder.apply(event)
            if on_event is not None:
                on_event(event)

        emit({"event": "run.started", "execution_id": execution_id})
        if services is not None:
            await _drive(spec, record, store, services, emit, builder)
        else:
            async with open_services(settings) as own_services:
                await _drive(spec, record, store, own_services, emit, builder)
        record.finished_at = utcnow()
        await store.save_run(record)
        emit({"event": "run.finished", "execution_id": execution_id, "status": record.status})
        return record
    finally:
        if own_store:
            await store.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end on a fresh event loop (uvloop where installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed except on Windows
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_workflow(document: Any, inputs: dict[str, Any] | None = None,
                 **options: Any) -> RunRecord:
    """Blocking form of `execute_workflow_async`."""
    return run_sync(execute_workflow_async(document, inputs, **options))
