"""How runs look on the console: the summary with each node's timing, the open prompts
of a waiting run, the live progress table and the lines of `runs watch`."""

from __future__ import annotations

import json
import shlex
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table

from flowloom.app.cli.common import err, out

if TYPE_CHECKING:
    from flowloom.app.records import NodeState, RunRecord
    from flowloom.graphs.events import WireEvent

STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow",
                "skipped": "dim", "running": "cyan", "retrying": "magenta", "waiting": "blue",
                "queued": "default"}
UNBOUNDED = 1_000_000


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'default')}]{status}[/]"


def table(*columns: str) -> Table:
    """A table that folds long cells on a narrow terminal instead of cutting them."""
    grid = Table(box=None, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    return grid


def print_table(grid: Table) -> None:
    """On a terminal, as wide as the terminal; piped, as wide as the widest row, so ids and
    dates stay whole and on one line."""
    if out.is_terminal:
        out.print(grid)
    else:
        width = Measurement.get(out, out.options.update(max_width=UNBOUNDED), grid).maximum
        Console(file=out.file, width=width, highlight=False, soft_wrap=True).print(grid)


def when(at: datetime | None) -> str:
    return at.isoformat(sep=" ", timespec="milliseconds") if at else ""


def duration(state: NodeState) -> str:
    ms = state.latency_ms
    if ms is None and state.started_at and state.finished_at:
        ms = (state.finished_at - state.started_at).total_seconds() * 1000
    return f"{ms:.1f} ms" if ms is not None else ""


def execution_order(record: RunRecord) -> list[tuple[str, NodeState]]:
    """Nodes by when they started; those that never started (skipped) by when they
    ended, after the rest; the record's order breaks ties."""
    def key(item: tuple[int, tuple[str, NodeState]]) -> tuple[int, datetime | str, int]:
        index, (_, state) = item
        at = state.started_at or state.finished_at
        return (0, at, index) if at else (1, "", index)
    return [item for _, item in sorted(enumerate(record.node_states.items()), key=key)]


def answer_command(execution_id: str, node_id: str) -> str:
    return (f"flowloom resume {shlex.quote(execution_id)} --value '<json>' "
            f"--node {shlex.quote(node_id)}")


def prompts(record: RunRecord) -> None:
    """Each open approval of a waiting run, and the command that answers it."""
    for pending in record.waiting_for:
        node_id = str(pending.get("node_id"))
        out.print(f"waiting at node {node_id}: {pending.get('prompt') or ''}", markup=False)
        schema = pending.get("schema")
        out.print(f"  answer schema: {json.dumps(schema) if schema else 'any JSON value'}",
                  markup=False)
        out.print(f"  answer with: {answer_command(record.execution_id, node_id)}",
                  markup=False)


def summary(record: RunRecord) -> None:
    out.print(f"run {record.execution_id}: {styled(record.status)}")
    out.print(f"workflow {record.workflow_id} version {record.workflow_version}, "
              f"created {when(record.created_at)}", markup=False)
    grid = table("node", "status", "attempts", "started", "finished", "duration", "error")
    for node_id, state in execution_order(record):
        grid.add_row(node_id, styled(state.status), str(state.attempts or ""),
                     when(state.started_at), when(state.finished_at), duration(state),
                     (state.error or {}).get("message", ""))
    print_table(grid)
    if record.status == "succeeded":
        out.print_json(json.dumps(record.output, default=str))
    if record.status == "waiting":
        prompts(record)
    for error in record.errors:
        err.print(f"error: {error.message}", markup=False, highlight=False)


def node_status(event: WireEvent) -> tuple[str, str] | None:
    """(status, note) of a node event, None for other events."""
    kind = event["event"]
    if not (event.get("node_id") and kind.startswith("node.")):
        return None
    status = kind.removeprefix("node.")
    note = f"attempt {event['attempt']}" if event.get("attempt", 1) > 1 else ""
    if status == "failed":
        error = (event.get("meta") or {}).get("error") or event.get("error") or {}
        note = error.get("message", note)
    return ("running" if status == "started" else status), note


class Progress:
    """A live table of node states while a run goes, on a terminal."""

    def __init__(self) -> None:
        self.states: dict[str, tuple[str, str]] = {}
        self.live = Live(self._table(), console=err, refresh_per_second=8, transient=True)

    def _table(self) -> Table:
        grid = Table(box=None, show_header=False)
        for node_id, (status, note) in self.states.items():
            grid.add_row(node_id, styled(status), note)
        return grid

    def on_event(self, event: WireEvent) -> None:
        shown = node_status(event)
        if shown is not None:
            self.states[event["node_id"]] = shown
            self.live.update(self._table())
