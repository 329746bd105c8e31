"""The run record of http-api.md, and how events from a running graph update it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from flowloom.graphs.budget import text_size
from flowloom.graphs.events import WireEvent
from flowloom.graphs.limits import MAX_RUN_STATE_BYTES, MAX_VALUE_DEPTH, deepest_path

RunStatus = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]
NodeStatus = Literal["running", "retrying", "waiting", "succeeded", "failed", "skipped",
                     "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
MAX_RECORD_OUTPUT_BYTES = 256 * 1024
# Every execution id, chosen or made (a uuid; `parent.each[3].sub` for a child run): no
# spaces or slashes, which break URL paths and shell commands. The CLI and the API use it.
EXECUTION_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\[\]-]{0,511}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_epoch(at: float | None) -> datetime | None:
    return datetime.fromtimestamp(at, UTC) if at is not None else None


class NodeState(BaseModel):
    status: NodeStatus
    output: Any = None
    attempts: int = 0
    cached: bool | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    latency_ms: float | None = None
    error: dict[str, Any] | None = None
    child_execution_id: str | None = None  # a subworkflow node's child run
    idempotency_key: str | None = None  # sent with every attempt of a side-effecting node
    # Its templated config fields as rendered for this run, redacted, about 16 KiB at most.
    config: dict[str, Any] | None = None
    items_total: int | None = None  # a foreach's item count, known once it has its items


class LogEntry(BaseModel):
    at: datetime
    node_id: str | None = None
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str


class RunError(BaseModel):
    node_id: str | None = None
    type: str
    message: str


class RunRecord(BaseModel):
    execution_id: str
    workflow_id: str | None = None
    workflow_version: int | None = None
    status: RunStatus = "queued"
    inputs: dict[str, Any] = Field(default_factory=dict)
    output: Any = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None  # the executing process's heartbeat
    owner: str | None = None  # host:pid of the process that drives (or last drove) the run
    started_at: datetime | None = None
    finished_at: datetime | None = None
    node_states: dict[str, NodeState] = Field(default_factory=dict)
    logs: list[LogEntry] = Field(default_factory=list)
    errors: list[RunError] = Field(default_factory=list)
    correlation_id: str | None = None
    waiting_for: list[dict[str, Any]] = Field(default_factory=list)  # pending approvals
    parent_execution_id: str | None = None  # set on a subworkflow's child run
    cancelled_by: str | None = None
    cancelled_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def mark_cancelled(record: RunRecord, by: str) -> None:
    """Cancel a run that no process is driving: its record is all there is to change."""
    now = utcnow()
    record.status, record.cancelled_by, record.cancelled_at = "cancelled", by, now
    record.finished_at = record.updated_at = now
    for state in record.node_states.values():
        if state.status in ("waiting", "running", "retrying"):
            state.status = "cancelled"
    record.waiting_for = []


def truncate_for_record(value: Any) -> Any:
    """Outputs over 256 KB are kept whole in the checkpoint and cut here, with a marker;
    so is one nested too deep to read back (a workflow's output rule can nest outputs)."""
    path = deepest_path(value, MAX_VALUE_DEPTH)
    if path is not None:
        return {"truncated": True, "reason": f"nested deeper than {MAX_VALUE_DEPTH} levels "
                                             f"at {path}"}
    text = json.dumps(value, default=str)
    if len(text.encode()) <= MAX_RECORD_OUTPUT_BYTES:
        return value
    return {"truncated": True, "size_bytes": len(text.encode()),
            "preview": text[: MAX_RECORD_OUTPUT_BYTES // 4]}


def kept_bytes(record: RunRecord) -> int:
    """What the outputs a resumed run already has weigh (the whole size of those cut for
    the record), as counted against FLOWLOOM_MAX_RUN_STATE_BYTES."""
    total = 0
    for state in record.node_states.values():
        output = state.output
        if isinstance(output, dict) and output.get("truncated") is True:
            total += int(output.get("size_bytes") or 0)
        elif output is not None:
            total += text_size(output, MAX_RUN_STATE_BYTES * 1024, timed=False)
    return total


class RecordBuilder:
    """Folds node events into a run record as they happen."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.active: set[str] = set()

    def apply(self, event: WireEvent) -> None:
        kind = event["event"]
        node_id = event.get("node_id")
        at = from_epoch(event.get("at"))
        states = self.record.node_states
        if kind == "log":
            self.record.logs.append(LogEntry.model_validate({
                "at": at or utcnow(), "node_id": node_id, "level": event.get("level", "info"),
                "message": event["message"]}))
            return
        if node_id is None:
            return
        state = states.get(node_id)
        if kind == "node.started":
            self.active.add(node_id)
            if state is None or state.status in FINISHED or state.status == "skipped":
                states[node_id] = NodeState(status="running", attempts=event.get("attempt", 1),
                                            started_at=at, items_total=event.get("items_total"))
            else:
                state.status, state.attempts = "running", event.get("attempt", state.attempts)
                state.items_total = event.get("items_total", state.items_total)
        elif kind == "node.retrying":
            if state is not None:
                state.status = "retrying"
            self.record.logs.append(LogEntry(at=at or utcnow(), node_id=node_id, level="warning",
                                             message=f"retrying: {event.get('reason')}"))
        elif kind in ("node.succeeded", "node.failed"):
            self.active.discard(node_id)
            meta = event.get("meta") or {}
            ok = kind == "node.succeeded"
            error = meta.get("error") or event.get("error")
            output = event.get("output") if ok else ({"error": error} if event.get("handled")
                                                     else None)
            states[node_id] = NodeState(
                status="succeeded" if ok else "failed",
                output=truncate_for_record(output),
                attempts=meta.get("attempts", event.get("attempt", 1)),
                cached=meta.get("cached"),
                model=meta.get("model"),
                usage=meta.get("usage"),
                child_execution_id=meta.get("child_execution_id"),
                idempotency_key=meta.get("idempotency_key"),
                config=meta.get("config"),
                items_total=meta.get("items", state.items_total if state else None),
                started_at=(from_epoch(meta.get("started_at"))
                            or (state.started_at if state else None)),
                finished_at=from_epoch(meta.get("finished_at")) or at,
                latency_ms=meta.get("latency_ms"),
                error=error,
            )
            if not ok:
                level: Literal["warning", "error"] = (
                    "warning" if event.get("handled") else "error")
                message = (error or {}).get("message", "failed")
                self.record.logs.append(LogEntry(at=at or utcnow(), node_id=node_id,
                                                 level=level, message=message))
        elif kind == "node.waiting":
            self.active.discard(node_id)
            if state is not None:
                state.status = "waiting"  # the runner fills `waiting_for` from the checkpoint
        elif kind == "node.skipped":
            states[node_id] = NodeState(status="skipped", finished_at=at)
        elif kind == "node.cancelled":
            self.active.discard(node_id)
            if state is not None:
                state.status, state.finished_at = "cancelled", at

    def settle_from_state(self, state: dict[str, Any]) -> None:
        """Complete the record from the graph's checkpointed state: a process killed
        right after a node finished may not have written that node's events, and the
        resumed run does not run it again."""
        outputs = state.get("outputs") or {}
        for node_id, meta in (state.get("nodes") or {}).items():
            known = self.record.node_states.get(node_id)
            status = meta.get("status")
            if status in ("succeeded", "failed", "skipped") and (
                    known is None or known.status not in (*FINISHED, "skipped")):
                self.active.discard(node_id)
                self.record.node_states[node_id] = NodeState(
                    status=status, output=truncate_for_record(outputs.get(node_id)),
                    attempts=known.attempts if known else 0,
                    started_at=known.started_at if known else None)
