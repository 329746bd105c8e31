"""Durability costs, measured in one run. Prints a table.

    python bench/bench_durable.py

1. A durable step: a 100-node chain on the SQLite saver (durability="sync") against the
   same graph with LangGraph's in-memory saver.
2. Listing the newest 50 of 100,000 runs of one workflow on the SQLite store.
3. Resuming a 1,000-node run whose last node failed: only that node runs again.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import chain_document
from bench.table import print_table
from flowloom import compile_workflow, load_workflow
from flowloom.app.records import RunRecord
from flowloom.app.runner import execute_workflow_async, resume_workflow, run_sync
from flowloom.app.settings import load_settings
from flowloom.app.stores.base import RunQuery
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.app.stores.sqlite_saver import InlineSqliteSaver
from flowloom.graphs.context import NodeContext, RunContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeType
from flowloom.nodes.registry import register_node_type


async def durable_step(folder: Path, runs: int = 7) -> tuple[float, float]:
    spec = load_workflow(chain_document(100))

    async def median_ms(saver: Any) -> float:
        graph = compile_workflow(spec, saver)
        times = []
        for _ in range(runs + 1):
            start = time.perf_counter()
            await graph.ainvoke({"inputs": {}, "run": {}},
                                {"configurable": {"thread_id": uuid.uuid4().hex}},
                                context=RunContext("b"), durability="sync")
            times.append((time.perf_counter() - start) * 1000 / 100)
        return statistics.median(times[1:])

    memory = await median_ms(InMemorySaver())
    async with InlineSqliteSaver.open(str(folder / "steps.db")) as saver:
        durable = await median_ms(saver)
    return durable, memory


async def listing(folder: Path, total: int = 100_000) -> float:
    store = SqliteStore(folder / "history.db")
    db = await store._db()
    base = datetime.now(UTC) - timedelta(days=1)
    rows = []
    for i in range(total):
        record = RunRecord(execution_id=f"run{i:06d}", workflow_id="busy", workflow_version=1,
                           status="succeeded", created_at=base + timedelta(milliseconds=i))
        rows.append((record.execution_id, "busy", 1, "succeeded",
                     record.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                     record.model_dump_json()))
    await db.executemany("INSERT INTO runs (execution_id, workflow_id, workflow_version, status, "
                         "created_at, record) VALUES (?, ?, ?, ?, ?, ?)", rows)
    times = []
    for _ in range(21):
        start = time.perf_counter()
        page = await store.list_runs(RunQuery(workflow_id="busy", limit=50))
        times.append((time.perf_counter() - start) * 1000)
    assert page.runs[0].execution_id == f"run{total - 1:06d}" and len(page.runs) == 50
    await store.close()
    return statistics.median(times)


class FailsOnce(NodeType):
    """Fails the first time it runs in this process, as a transient fault would."""

    name = "bench_fails_once"
    failed = False

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        if not FailsOnce.failed:
            FailsOnce.failed = True
            raise NodeError("transient fault")
        return "recovered"


async def resume_big(folder: Path) -> tuple[float, int]:
    register_node_type(FailsOnce())
    doc = chain_document(999)
    doc["nodes"].append({"id": "last", "type": "bench_fails_once"})
    doc["edges"].append({"source": "n998", "target": "last"})
    settings = load_settings(store=f"sqlite:///{folder / 'resume.db'}")
    first = await execute_workflow_async(doc, execution_id="big", settings=settings)
    assert first.status == "failed"
    started: list[str] = []
    start = time.perf_counter()
    record = await resume_workflow("big", settings=settings, on_event=lambda e: started.append(
        e["node_id"]) if e["event"] == "node.started" else None)
    elapsed = time.perf_counter() - start
    assert record.status == "succeeded" and record.output == "recovered"
    return elapsed, len(started)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        durable, memory = run_sync(durable_step(folder))
        list_ms = run_sync(listing(folder))
        resume_s, reran = run_sync(resume_big(folder))
    rows = [
        ("durable step, SQLite saver, durability=sync (per node)", f"{durable:.3f} ms", ""),
        ("the same step, in-memory saver (per node)", f"{memory:.3f} ms", ""),
        ("ratio durable / in-memory", f"{durable / memory:.2f}x", "report; < 2x wished"),
        ("newest 50 of 100,000 runs of one workflow (median)", f"{list_ms:.2f} ms", "< 20 ms"),
        ("resume a 1,000-node run whose last node failed", f"{resume_s * 1000:.0f} ms",
         "< 1 s"),
        ("  nodes run again by that resume", str(reran), "1"),
    ]
    print_table(rows)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
