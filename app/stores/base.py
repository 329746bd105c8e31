"""What every store backend offers: workflows (every version), run records with their
event logs and history, and the LangGraph checkpointer of the same backend."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
from langgraph.checkpoint.base import BaseCheckpointSaver

from flowloom.app.records import RunRecord
from flowloom.graphs.errors import WorkflowError
from flowloom.graphs.events import WireEvent


class InvalidCursor(WorkflowError):
    """A history cursor that this store did not hand out."""


@dataclass(frozen=True, slots=True)
class StoredWorkflow:
    id: str
    version: int
    document: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RunQuery:
    workflow_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error: str | None = None  # a case-insensitive part of one of the run's error messages
    limit: int = 50
    cursor: str | None = None


@dataclass(slots=True)
class RunPage:
    runs: list[RunRecord] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(created_at: datetime, execution_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), execution_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, execution_id = json.loads(raw)
        return datetime.fromisoformat(at), str(execution_id)
    except (ValueError, TypeError) as exc:
        raise InvalidCursor(f"invalid cursor `{cursor[:80]}`: pass back a `next_cursor` as "
                            "it was given") from exc


def same_document(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Documents equal but for their id and version, which the store assigns."""
    return ({k: v for k, v in a.items() if k not in ("id", "version")}
            == {k: v for k, v in b.items() if k not in ("id", "version")})


class Store(Protocol):
    async def put_workflow(self, workflow_id: str, document: dict[str, Any],
                           *, new_version: bool = False) -> StoredWorkflow:
        """Store `document` as the next version, unless the latest version is identical
        (then that one is returned) or `new_version` forces one."""

    async def get_workflow(self, workflow_id: str, version: int | None = None, *,
                           include_deleted: bool = False) -> StoredWorkflow | None: ...

    async def list_workflows(self, *, limit: int = 50,
                             offset: int = 0) -> list[StoredWorkflow]: ...

    async def delete_workflow(self, workflow_id: str) -> bool: ...

    async def save_run(self, record: RunRecord) -> None: ...

    async def get_run(self, execution_id: str) -> RunRecord | None: ...

    async def list_runs(self, query: RunQuery) -> RunPage:
        """Newest first (created_at, then execution id), filtered, keyset-paginated."""

    async def append_events(self, execution_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Append to the run's event log; each event carries its `seq`."""

    async def save_run_with_events(self, record: RunRecord, events: Sequence[Mapping[str, Any]],
                                   fence: Sequence[datetime] | None = None) -> None:
        """`append_events` then `save_run`, in one transaction where the backend can
        (MongoDB: the events committed by the record's own update, mongo_events.py).
        With `fence` (the values of the run's `updated_at` this owner may have left: see
        Lease), the write is conditional: if the stored run holds none of them (another
        process claimed it), nothing is written and LeaseLost is raised."""

    async def list_events(self, execution_id: str, after: int = 0) -> list[WireEvent]: ...

    async def request_cancel(self, execution_id: str, by: str) -> None: ...

    async def cancel_requested(self, execution_id: str) -> str | None:
        """Who asked to cancel this run, if anyone did."""

    async def count_descendants(self, execution_id: str) -> int:
        """How many child runs (of `subworkflow` nodes, all levels) a run has: those whose
        execution id starts with its own and a dot, as `app/subflows.py` names them."""

    async def stale_runs(self, before: datetime) -> list[RunRecord]:
        """Queued or running runs whose record was last written before `before`: their
        process is gone (a live one writes at least every few seconds)."""

    async def claim_run(self, execution_id: str, seen_status: str,
                        seen_updated_at: datetime) -> bool:
        """Take a run to execute it: true for exactly one of several processes that saw
        it in `seen_status`, last written at `seen_updated_at`. The run becomes
        `running` and its `updated_at` moves forward, in the record as read back too: it
        is no longer stale, every later claim from the same sighting fails, and if the
        claimer dies before its first write, the run goes stale and can be claimed again.
        A run changed since (cancelled, say) cannot be claimed, nor a queued run whose
        cancel was asked for; claiming a failed or waiting run (a resume on purpose)
        clears an earlier cancel request that lost its race."""

    async def create_run(self, record: RunRecord) -> bool:
        """Store a new run's first record; False, writing nothing, when a run with its
        execution id exists already (of two creators, exactly one wins)."""

    async def save_run_if(self, record: RunRecord, seen_status: str,
                          seen_updated_at: datetime) -> bool:
        """Write `record` only if the stored run is still in `seen_status`, last written
        at `seen_updated_at` (a compare-and-set: a cancel that loses to a claim fails)."""

    async def claim_idempotency_key(self, key: str, request_hash: str,
                                    execution_id: str) -> tuple[str, str] | None:
        """Tie `key` to a request and its run, atomically; when the key is already taken,
        return the (request_hash, execution_id) it is tied to instead."""

    async def delete_runs_before(self, cutoff: datetime) -> int:
        """Retention: delete the finished runs (succeeded, failed, cancelled) created
        before `cutoff`, with their events and checkpoints; returns how many runs went.
        A waiting, queued or running run is kept whatever its age: it may still resume."""

    def checkpointer(self) -> AbstractAsyncContextManager[BaseCheckpointSaver[Any]]:
        """The LangGraph checkpoint saver of this backend, open for the block. A write
        whose config carries a Lease (LEASE_KEY) is fenced like `save_run_with_events`."""

    async def close(self) -> None: ...


def json_text(value: Any) -> str:
    """JSON text of a record or event value, integers of any size included."""
    try:  # orjson: several times faster, and events are written on every step
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # what orjson refuses (integers past 64 bits): the standard way
        return json.dumps(value, default=str)
