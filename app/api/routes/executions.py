"""Executions: execute (sync or async), read, history, resume, cancel, live events."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from flowloom.app.api.deps import ExecutionIdPath, ManagerDep, StoreDep
from flowloom.app.api.errors import ApiError
from flowloom.app.api.event_docs import EVENTS_RESPONSES
from flowloom.app.execution import load_spec
from flowloom.app.lifecycle import live_owner, this_process
from flowloom.app.logs import correlation_id
from flowloom.app.records import RunRecord
from flowloom.app.runner import (
    MISSING,
    RunExists,
    cancel_workflow,
    check_answer,
    check_inputs,
    prepare_run,
)
from flowloom.app.stores.base import RunQuery, Store, StoredWorkflow

router = APIRouter(tags=["executions"])
MAX_IDEMPOTENCY_KEY = 255
MAX_WAIT_S = 300.0


class ExecuteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error

    inputs: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["sync", "async"] = "sync"
    wait_s: float = Field(default=30.0, ge=0, le=MAX_WAIT_S)
    async_execution: bool | None = Field(default=None, description="alias of mode: async")

    @property
    def is_async(self) -> bool:
        return self.mode == "async" or bool(self.async_execution)


class InlineExecuteBody(ExecuteBody):
    workflow: dict[str, Any]


class ResumeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any = None
    node_id: str | None = None
    mode: Literal["sync", "async"] = "sync"
    wait_s: float = Field(default=30.0, ge=0, le=MAX_WAIT_S)


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(default="api", max_length=200)


class Queued(BaseModel):
    execution_id: str
    status: str


class RunList(BaseModel):
    items: list[RunRecord]
    next_cursor: str | None


def _run_response(record: RunRecord, status: int) -> Response:
    return Response(record.model_dump_json(), status_code=status, media_type="application/json",
                    headers={"Location": f"/executions/{record.execution_id}"})


async def _record(store: Store, execution_id: str) -> RunRecord:
    record = await store.get_run(execution_id)
    if record is None:
        raise ApiError(404, "Not found", f"no run with execution id `{execution_id}`")
    return record


async def _answer_with(manager: ManagerDep, store: Store, task: asyncio.Task[Any],
                       execution_id: str, is_async: bool, wait_s: float) -> Response:
    if is_async:
        return JSONResponse(Queued(execution_id=execution_id, status="queued").model_dump(),
                            status_code=202, headers={"Location": f"/executions/{execution_id}"})
    done = await manager.wait(task, wait_s, execution_id)
    finished_here = done and not task.cancelled() and task.exception() is None
    result = task.result() if finished_here else None
    # The run's own record when it ended in this process; else what the store has.
    record = result if isinstance(result, RunRecord) else await _record(store, execution_id)
    return _run_response(record, 200 if done and record.status != "running" else 202)


async def _first_run(store: Store, first: RunRecord, body: ExecuteBody) -> Response:
    """The answer to a repeated request: the first request's run, waited for as the
    first request waits (a sync request until it ends or `wait_s` passes)."""
    deadline = asyncio.get_running_loop().time() + (0 if body.is_async else body.wait_s)
    while not first.finished and first.status != "waiting" and (
            asyncio.get_running_loop().time() < deadline):
        await asyncio.sleep(0.05)
        first = await _record(store, first.execution_id)
    return _run_response(first, 200 if first.finished or first.status == "waiting" else 202)


async def _execute(document: dict[str, Any], body: ExecuteBody, request: Request,
                   store: Store, manager: ManagerDep, idempotency_key: str | None,
                   stored: StoredWorkflow | None = None) -> Response:
    spec = load_spec(document)  # a bad document is 422 before any key is claimed
    execution_id = uuid.uuid4().hex
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise ApiError(422, "Invalid Idempotency-Key",
                       f"an Idempotency-Key has 1 to {MAX_IDEMPOTENCY_KEY} characters")
    if idempotency_key:
        check_inputs(spec, body.inputs)  # so are bad inputs (prepare_run checks them too)
        payload = {"path": request.url.path, "document": document,
                   "body": body.model_dump(mode="json", exclude={"wait_s"})}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        taken = await store.claim_idempotency_key(idempotency_key, digest, execution_id)
        if taken is not None:
            if taken[0] != digest:
                raise ApiError(422, "Idempotency-Key reused",
                               "this Idempotency-Key was used with another request body")
            # The key's run, made by the first request or, if that one has not stored it
            # yet (or died before it could), by this one: whoever creates it runs it.
            execution_id = taken[1]
            first = await store.get_run(execution_id)
            if first is not None:
                return await _first_run(store, first, body)
    try:
        _, record = await prepare_run(store, spec, body.inputs, execution_id=execution_id,
                                      correlation_id=correlation_id.get(), status="queued",
                                      stored=stored)
    except RunExists:
        if not idempotency_key:
            raise
        return await _first_run(store, await _record(store, execution_id), body)
    task = manager.start(record, spec)
    return await _answer_with(manager, store, task, execution_id, body.is_async, body.wait_s)


RUN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": RunRecord, "description": "the run, finished or paused"},
    202: {"model": RunRecord | Queued, "description": "queued, or the run so far"}}


@router.post("/workflows/{workflow_id}/execute", responses=RUN_RESPONSES)
async def execute_stored(workflow_id: str, body: ExecuteBody, request: Request,
                         store: StoreDep, manager: ManagerDep,
                         idempotency_key: str | None = Header(None),
                         version: int | None = Query(None, ge=1, le=2**31 - 1)) -> Response:
    # `?version=N` runs that version, addressed as `GET /workflows/{id}` addresses it.
    stored = await store.get_workflow(workflow_id, version)
    if stored is None:
        which = f" version {version}" if version else ""
        raise ApiError(404, "Not found", f"no workflow `{workflow_id}`{which}")
    return await _execute(stored.document, body, request, store, manager, idempotency_key,
                          stored)


@router.post("/execute", responses=RUN_RESPONSES)
async def execute_inline(body: InlineExecuteBody, request: Request, store: StoreDep,
                         manager: ManagerDep,
                         idempotency_key: str | None = Header(None)) -> Response:
    return await _execute(body.workflow, body, request, store, manager, idempotency_key)


@router.get("/executions/{execution_id}", response_model=RunRecord)
async def get_execution(execution_id: ExecutionIdPath, store: StoreDep) -> RunRecord:
    return await _record(store, execution_id)


async def _history(store: Store, workflow_id: str | None, status: str | None,
                   since: datetime | None, until: datetime | None, error: str | None,
                   limit: int, cursor: str | None) -> RunList:
    page = await store.list_runs(RunQuery(workflow_id=workflow_id, status=status, since=since,
                                          until=until, error=error, limit=limit, cursor=cursor))
    return RunList(items=page.runs, next_cursor=page.next_cursor)


# Not in http-api.md: the run viewer's search by error text (docs/semantics.md).
ErrorText = Query(None, min_length=1, max_length=200,
                  description="runs with an error message holding this text, any case")


RunStatusFilter = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]


@router.get("/workflows/{workflow_id}/executions", response_model=RunList)
async def workflow_history(workflow_id: str, store: StoreDep,
                           status: RunStatusFilter | None = None,
                           since: datetime | None = None, until: datetime | None = None,
                           error: str | None = ErrorText,
                           limit: int = Query(50, ge=1, le=200),
                           cursor: str | None = None) -> RunList:
    return await _history(store, workflow_id, status, since, until, error, limit, cursor)


@router.get("/executions", response_model=RunList)
async def history(store: StoreDep, status: RunStatusFilter | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  error: str | None = ErrorText,
                  limit: int = Query(50, ge=1, le=200), cursor: str | None = None) -> RunList:
    return await _history(store, None, status, since, until, error, limit, cursor)


@router.post("/executions/{execution_id}/resume", responses=RUN_RESPONSES)
async def resume(execution_id: ExecutionIdPath, body: ResumeBody, store: StoreDep,
                 manager: ManagerDep) -> Response:
    record = await _record(store, execution_id)
    if record.status in ("succeeded", "cancelled"):
        raise ApiError(409, "Conflict", f"execution `{execution_id}` already {record.status}; "
                                        "nothing to resume")
    value = body.value if "value" in body.model_fields_set else MISSING
    kwargs: dict[str, Any] = {"node_id": body.node_id}
    if record.status == "waiting":
        check_answer(record, value, body.node_id)  # a bad answer: 422, the run keeps waiting
        kwargs["value"] = value
    seen = record.updated_at or record.created_at
    interrupted = record.status in ("queued", "running")
    if execution_id in manager.tasks:
        raise ApiError(409, "Conflict", f"execution `{execution_id}` is {record.status} in "
                                        f"this process ({this_process()}); nothing to resume")
    refusal = live_owner(record, manager.stale_after.total_seconds())
    if refusal:
        raise ApiError(409, "Conflict", f"{refusal}; nothing to resume now")
    # An interrupted run (its process stopped) is taken over; others are claimed on resume.
    claim = (record.status, seen) if interrupted else None
    task = manager.resume(execution_id, claim=claim, **kwargs)
    return await _answer_with(manager, store, task, execution_id, body.mode == "async",
                              body.wait_s)


@router.post("/executions/{execution_id}/cancel", response_model=RunRecord)
async def cancel(execution_id: ExecutionIdPath, store: StoreDep, manager: ManagerDep,
                 response: Response, body: CancelBody | None = None) -> RunRecord:
    await _record(store, execution_id)
    record = await cancel_workflow(execution_id, by=(body or CancelBody()).by, store=store)
    task = manager.tasks.get(execution_id)
    if task is not None:
        await manager.wait(task, 2.0, execution_id)  # it notices within a quarter second
        record = await _record(store, execution_id)
    response.status_code = 200 if record.status == "cancelled" else 202
    return record


POLL_S = 0.1
MAX_EVENT_ID = 2**63 - 1  # SQLite's and BSON's largest integer


def _event_id(last_event_id: str | None) -> int:
    if not last_event_id:
        return 0
    text = last_event_id.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_EVENT_ID:
        raise ApiError(422, "Invalid Last-Event-ID",
                       f"Last-Event-ID must be an event id from 0 to {MAX_EVENT_ID}")
    return int(text)


@router.get("/executions/{execution_id}/events", response_class=EventSourceResponse,
            responses=EVENTS_RESPONSES)
async def events(execution_id: ExecutionIdPath, store: StoreDep,
                 last_event_id: str | None = Header(None)) -> EventSourceResponse:
    await _record(store, execution_id)
    after = _event_id(last_event_id)  # checked before the stream starts: a 422, not a cut

    async def stream() -> Any:
        # A resumed run goes on with the same log after its `run.finished`: the stream
        # ends only once the record is finished and nothing was logged after it.
        seq = after
        while True:
            batch = await store.list_events(execution_id, after=seq)
            for event in batch:
                seq = event["seq"]
                yield {"event": event["event"], "id": str(seq),
                       "data": json.dumps(event, default=str)}
            if not batch:
                record = await store.get_run(execution_id)
                if record is None or (record.finished and not await store.list_events(
                        execution_id, after=seq)):
                    return
                await asyncio.sleep(POLL_S)

    return EventSourceResponse(stream(), ping=15)
