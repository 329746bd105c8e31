"""runs list, runs show and runs watch: the run history in the configured store."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from flowloom.app.cli.common import (
    EXIT_STATUS,
    ExecutionId,
    JsonFlag,
    configured,
    fail,
    out,
    run_sync,
    with_store,
)
from flowloom.app.cli.render import node_status, print_table, styled, summary, table

if TYPE_CHECKING:
    from flowloom.app.records import RunRecord
    from flowloom.app.stores import Store
    from flowloom.graphs.events import WireEvent


class Status(StrEnum):
    queued = "queued"
    running = "running"
    waiting = "waiting"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


WATCH_POLL_S = 0.1


def list_runs(
    workflow: Annotated[str | None, typer.Option("--workflow")] = None,
    status: Annotated[Status | None, typer.Option("--status", case_sensitive=False)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Run history, newest first."""
    from flowloom.app.stores.base import RunQuery

    query = RunQuery(workflow_id=workflow, status=status.value if status else None,
                     limit=limit)
    page = run_sync(with_store(configured(), lambda s: s.list_runs(query)))
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in page.runs]))
        return
    grid = table("execution id", "workflow", "version", "status", "created")
    for r in page.runs:
        grid.add_row(r.execution_id, r.workflow_id or "", str(r.workflow_version or ""),
                     styled(r.status), r.created_at.isoformat(timespec="seconds"))
    print_table(grid)


def show(execution_id: ExecutionId, as_json: JsonFlag = False) -> None:
    """One run record (GET /executions/{id}): node timings and open approval prompts."""
    record = run_sync(with_store(configured(), lambda s: s.get_run(execution_id)))
    if record is None:
        raise fail(f"no run with execution id `{execution_id}`", 1)
    if as_json:
        print(record.model_dump_json(indent=2))
    else:
        summary(record)


def _progress_line(event: WireEvent) -> None:
    shown = node_status(event)
    if shown is not None:
        status, note = shown  # no clock on the line: what happened, in order
        out.print(f"{event['node_id']} {styled(status)}" + (f" ({note})" if note else ""))


async def follow(store: Store, execution_id: str) -> RunRecord | None:
    """Print the run's node events from its first, as they are written, until it is
    finished or waiting with nothing more to tell; None when there is no such run."""
    if await store.get_run(execution_id) is None:
        return None
    seq = 0
    while True:
        batch = await store.list_events(execution_id, after=seq)
        for event in batch:
            seq = event["seq"]
            _progress_line(event)
        if batch:
            continue
        record = await store.get_run(execution_id)
        if record is None:  # deleted meanwhile (retention)
            return None
        if record.status in EXIT_STATUS and not await store.list_events(execution_id, seq):
            return record
        await asyncio.sleep(WATCH_POLL_S)


def watch(execution_id: ExecutionId) -> None:
    """Live node progress of a run executing anywhere, until it finishes or waits."""
    settings = configured()
    record = run_sync(with_store(settings, lambda s: follow(s, execution_id)))
    if record is None:
        raise fail(f"no run with execution id `{execution_id}`", 1)
    summary(record)
    raise typer.Exit(EXIT_STATUS[record.status])
