"""Starting, resuming and cancelling runs in this process (the Python API of the spec)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

from langgraph.types import Command

from flowloom.app.execution import drive, initial_input, load_spec
from flowloom.app.lifecycle import (
    EventCallback,
    LiveRecord,
    NotResumable,
    RunNotFound,
    cancel_run,
    claim_for_resume,
    driving,
    resumable,
    take_lease,
)
from flowloom.app.logs import bound_correlation_id, install_record_factory
from flowloom.app.records import RunRecord, utcnow
from flowloom.app.services import open_services
from flowloom.app.settings import Settings, load_settings
from flowloom.app.shared import shared_resources
from flowloom.app.stores import Store
from flowloom.app.stores.base import StoredWorkflow, same_document
from flowloom.app.tuning import paced_collection
from flowloom.graphs import InputError, Problem, SpecError, WorkflowError, WorkflowSpec
from flowloom.graphs.limits import ValueTooLarge, check_value_shape
from flowloom.graphs.schemas import InvalidSchema, validation_errors
from flowloom.nodes.services import Services

MAX_INPUT_BYTES = 256 * 1024
T = TypeVar("T")
_MISSING: Any = object()
MISSING = _MISSING  # "no answer given", as opposed to an answer of null
_retention_done: set[str] = set()


class RunExists(WorkflowError):
    """A new run was asked for under an execution id that is taken."""


class AnswerError(InputError):
    """An approval's answer is missing or does not fit its schema; the run keeps waiting.
    `path` is inside the answer (`$` is the answer itself)."""

    def __init__(self, node_id: str, path: str, message: str) -> None:
        self.node_id = node_id
        self.path = path
        self.message = f"answer to approval `{node_id}`: {message}"
        where = "" if path == "$" else f" at {path}"
        WorkflowError.__init__(self, f"answer to approval `{node_id}`{where}: {message}")


def check_inputs(spec: WorkflowSpec, inputs: dict[str, Any]) -> None:
    """Raise InputError naming the failing JSON path when inputs do not fit the schema."""
    try:
        check_value_shape(inputs, what="inputs", max_bytes=MAX_INPUT_BYTES)
    except ValueTooLarge as exc:
        raise InputError(exc.path, exc.message) from None
    if spec.inputs_schema is not None:
        try:
            check_value(spec.inputs_schema, inputs)
        except InvalidSchema as exc:  # a spec built in Python skips document validation
            path = "$.inputs_schema" + exc.path[1:]
            raise SpecError([Problem(path, exc.message)]) from None


def check_value(schema: dict[str, Any], value: Any) -> None:
    """Raise InputError for the first way `value` fails `schema`; InvalidSchema when the
    schema is unusable. Nothing is fetched: `$ref` resolves inside the schema only."""
    errors = validation_errors(schema, value)
    if errors:
        raise InputError(*errors[0])


def workflow_id_of(spec: WorkflowSpec, document: dict[str, Any]) -> str:
    """The document's id, or a stable one derived from its content for inline workflows."""
    if spec.id:
        return spec.id
    return content_id(document)


def content_id(document: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    return f"inline-{digest[:12]}"


async def pin_document(store: Store, spec: WorkflowSpec,
                       canonical: dict[str, Any]) -> StoredWorkflow:
    """The stored version a run of this document is pinned to. Running never changes a
    published workflow: a document identical to its id's latest version runs that
    version; one whose id was never stored becomes that id's first version (so its runs
    are listed under its id, and publishing the same content later answers with it); any
    other is kept under its content id, and the id's latest version stays what was pushed."""
    if spec.id:
        latest = await store.get_workflow(spec.id)  # None once deleted: not run again
        if latest is None and await store.get_workflow(spec.id, include_deleted=True) is None:
            return await store.put_workflow(spec.id, canonical)
        # A stored document is canonical, so mostly equal as it is; one canonical
        # under an older release is made canonical again first.
        if latest is not None and (same_document(latest.document, canonical) or same_document(
                load_spec(latest.document).model_dump(mode="json", exclude_none=True),
                canonical)):
            return latest
    return await store.put_workflow(content_id(canonical), canonical)


@asynccontextmanager
async def _resources(settings: Settings | None, store: Store | None,
                     services: Services | None) -> AsyncIterator[tuple[Store, Services]]:
    settings = settings or load_settings()
    if store is None:  # kept open for the next call on this loop (app/shared.py)
        store, shared = await shared_resources(settings)
        services = shared if services is None else services
    if settings.store not in _retention_done:  # once per process and store
        _retention_done.add(settings.store)
        await store.delete_runs_before(utcnow() - timedelta(days=settings.retention_days))
    if services is not None:
        yield store, services
    else:
        async with open_services(settings) as own:
            yield store, own


async def _execute(store: Store, services: Services, spec: WorkflowSpec, record: RunRecord,
                   graph_input: Any, on_event: EventCallback | None,
                   stale_after_s: float) -> RunRecord:
    install_record_factory()
    # The run's log lines carry its own correlation id, wherever and whenever it runs (a
    # worker, a resume); its child runs take it on from here.
    with bound_correlation_id(record.correlation_id), driving(record.execution_id):
        # A run that never started has no events; a resumed one continues their numbering.
        events = await store.list_events(record.execution_id) if record.started_at else []
        live = LiveRecord(store, record, events[-1]["seq"] if events else 0, on_event,
                          stale_after_s=stale_after_s)
        await take_lease(store, live)
        services = _with_subflows(services, store)
        with paced_collection():
            await drive(spec, record, store, services, live, graph_input)
        return record


def _with_subflows(services: Services, store: Store) -> Services:
    from flowloom.app.subflows import Subflows  # the child-run service of `subworkflow` nodes
    if services.subflows is None:
        services.subflows = Subflows(store, services, execute_workflow_async, resume_workflow)
    return services


async def prepare_run(
    store: Store, document: Any, inputs: dict[str, Any] | None = None, *,
    execution_id: str | None = None, correlation_id: str | None = None,
    parent_execution_id: str | None = None, status: str = "running",
    stored: StoredWorkflow | None = None,
) -> tuple[WorkflowSpec, RunRecord]:
    """Validate, pin the workflow version and store the run's first record. Raises
    SpecError or InputError before anything is stored. `stored`: the stored version
    `document` was read from, which pins the run without storing it again."""
    spec = load_spec(document)
    inputs = dict(inputs or {})
    check_inputs(spec, inputs)
    if stored is None:
        canonical = spec.model_dump(mode="json", exclude_none=True)
        stored = await pin_document(store, spec, canonical)
    workflow_id = stored.id
    execution_id = execution_id or uuid.uuid4().hex
    # A run started outside any request (the CLI, the Python API) gets an id of its own.
    correlation_id = correlation_id or uuid.uuid4().hex
    record = RunRecord(execution_id=execution_id, workflow_id=workflow_id,
                       workflow_version=stored.version, status=status,  # type: ignore[arg-type]
                       inputs=inputs, correlation_id=correlation_id,
                       parent_execution_id=parent_execution_id)
    if not await store.create_run(record):
        raise RunExists(f"execution `{execution_id}` already exists; "
                        "use `flowloom resume` to continue it")
    return spec, record


async def spec_of(store: Store, record: RunRecord) -> WorkflowSpec:
    """The workflow version a run was pinned to."""
    stored = await store.get_workflow(record.workflow_id or "", record.workflow_version,
                                      include_deleted=True)
    if stored is None:
        raise NotResumable(f"workflow `{record.workflow_id}` version "
                           f"{record.workflow_version} of run {record.execution_id} is gone")
    return load_spec(stored.document)


async def start_prepared(store: Store, services: Services, spec: WorkflowSpec,
                         record: RunRecord, on_event: EventCallback | None = None, *,
                         stale_after_s: float = 10.0) -> RunRecord:
    """Run a prepared (queued) record from its first node. `stale_after_s`: when other
    processes take the run for orphaned (settings.stale_after_s); it paces the
    record's heartbeat."""
    graph_input = initial_input(record)  # also stamps record.started_at, once
    return await _execute(store, services, spec, record, graph_input, on_event,
                          stale_after_s)


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
    parent_execution_id: str | None = None,
) -> RunRecord:
    """Run a workflow (any dialect) to its end or first pause; returns its run record.

    Raises SpecError for an invalid document and InputError for inputs that do not fit
    `inputs_schema`, before anything is stored or run.
    """
    settings = settings or load_settings()
    async with _resources(settings, store, services) as (store, services):
        spec, record = await prepare_run(store, document, inputs, execution_id=execution_id,
                                         correlation_id=correlation_id,
                                         parent_execution_id=parent_execution_id)
        return await start_prepared(store, services, spec, record, on_event,
                                    stale_after_s=settings.stale_after_s)


def check_answer(record: RunRecord, value: Any, node_id: str | None) -> Command[Any]:
    """The resume command for a waiting run; raises when the answer cannot be taken."""
    pending = record.waiting_for
    if node_id is not None:
        chosen = [p for p in pending if p.get("node_id") == node_id]
        if not chosen:
            raise NotResumable(f"execution `{record.execution_id}` is not waiting for node "
                               f"`{node_id}` (waiting for: "
                               f"{', '.join(p['node_id'] for p in pending)})")
    elif len(pending) > 1:
        raise NotResumable(f"execution `{record.execution_id}` waits for several approvals "
                           f"({', '.join(p['node_id'] for p in pending)}); name the node")
    else:
        chosen = pending
    node = chosen[0]["node_id"]
    if value is _MISSING:
        raise AnswerError(node, "$", "no answer was given")
    try:  # the answer becomes the approval node's output, so outputs' limits apply
        check_value_shape(value, what="answer", max_bytes=MAX_INPUT_BYTES)
    except ValueTooLarge as exc:
        raise AnswerError(node, exc.path, exc.message) from None
    if chosen[0].get("schema"):
        try:
            check_value(chosen[0]["schema"], value)
        except InputError as exc:
            raise AnswerError(node, exc.path, exc.message) from None
        except InvalidSchema as exc:
            raise NotResumable(f"node `{chosen[0]['node_id']}` has an unusable answer "
                               f"schema, so no answer can be checked: schema{exc.path[1:]}: "
                               f"{exc.message}") from None
    return Command(resume={chosen[0]["interrupt_id"]: value})


async def resume_workflow(
    execution_id: str,
    value: Any = _MISSING,
    *,
    node_id: str | None = None,
    settings: Settings | None = None,
    store: Store | None = None,
    services: Services | None = None,
    on_event: EventCallback | None = None,
    take_over: bool = True,
    force: bool = False,
) -> RunRecord:
    """Continue a run from its last checkpoint: after a crash, a failure (only failed and
    unfinished nodes run again) or to answer an approval. A bad answer is refused and the
    run keeps waiting; a finished run is not run again.

    The run is claimed first, so of two resumes at once one goes ahead and the other is
    refused. A `running` run that this process is not executing is taken over: the
    caller says its process stopped (`flowloom resume` after a crash, the recovery of a
    stale run) once its record is older than `stale_after_s`: a fresh record means its
    process is alive, and the run is refused. `force` takes it over anyway (the caller
    claimed it, or knows its process is gone). Callers that cannot know pass
    `take_over=False` and are refused."""
    settings = settings or load_settings()
    async with _resources(settings, store, services) as (store, services):
        record = await resumable(store, execution_id)
        spec = await spec_of(store, record)
        graph_input = check_answer(record, value, node_id) if record.status == "waiting" else None
        if await claim_for_resume(store, record, stale_after_s=settings.stale_after_s,
                                  take_over=take_over, force=force):
            return record  # cancelled while no process drove it: not run again
        record.errors = []
        record.node_states = {k: v for k, v in record.node_states.items()
                              if v.status not in ("cancelled", "waiting")
                              and (v.error or {}).get("type") != "UpstreamFailed"}
        return await _execute(store, services, spec, record, graph_input, on_event,
                              settings.stale_after_s)


async def cancel_workflow(execution_id: str, *, by: str = "api", store: Store | None = None,
                          settings: Settings | None = None) -> RunRecord:
    """Cancel a queued, running or waiting run. A run going in some process stops at its
    next check (within a second); a queued or waiting one is cancelled here and now."""
    async with _resources(settings, store, Services()) as (store, _):
        return await cancel_run(store, execution_id, by)


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


__all__ = [
    "MISSING",
    "AnswerError",
    "NotResumable",
    "RunNotFound",
    "cancel_workflow",
    "check_answer",
    "execute_workflow_async",
    "prepare_run",
    "resume_workflow",
    "run_sync",
    "run_workflow",
    "spec_of",
    "start_prepared",
]
