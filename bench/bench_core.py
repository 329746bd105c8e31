"""Flowloom against hand-written LangGraph, measured in one process. Prints a table.

    python bench/bench_core.py [--runs 21]

1. A 100-node transform chain through Flowloom vs the same chain written by hand in
   LangGraph, both on Flowloom's SQLite saver (SqliteSaver run inline, with group commit) and
   durability="sync"; median of N interleaved runs.
2. A foreach over 10,000 items with a one-node body: time and peak memory (RSS).
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import START, StateGraph

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench.table import print_table
from flowloom import compile_workflow, load_workflow
from flowloom.app.runner import run_sync
from flowloom.app.stores.sqlite_saver import InlineSqliteSaver
from flowloom.graphs.context import RunContext
from flowloom.graphs.state import merge

CHAIN = 100


def chain_document(n: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "n0", "type": "transform", "config": {"output": 0}}]
    nodes += [{"id": f"n{i}", "type": "transform",
               "config": {"output": f"{{{{ outputs.n{i - 1} + 1 }}}}"}} for i in range(1, n)]
    edges = [{"source": f"n{i - 1}", "target": f"n{i}"} for i in range(1, n)]
    return {"id": "chain", "nodes": nodes, "edges": edges}


class HandState(TypedDict, total=False):
    outputs: Annotated[dict[str, Any], merge]


def hand_written_chain(n: int, saver: InlineSqliteSaver) -> Any:
    builder = StateGraph(HandState)

    def make(i: int) -> Any:
        async def node(state: HandState) -> HandState:
            prev = state.get("outputs", {}).get(f"n{i - 1}", -1)
            return {"outputs": {f"n{i}": prev + 1}}
        return node

    for i in range(n):
        builder.add_node(f"n{i}", make(i))
        builder.add_edge(START if i == 0 else f"n{i - 1}", f"n{i}")
    return builder.compile(checkpointer=saver).with_config(recursion_limit=n + 10)


async def time_runs(graph: Any, make_input: Any, runs: int, context: Any = None) -> list[float]:
    times = []
    for _ in range(runs):
        config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        start = time.perf_counter()
        kwargs = {"context": context} if context is not None else {}
        await graph.ainvoke(make_input(), config, durability="sync", **kwargs)
        times.append(time.perf_counter() - start)
    return times


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench_chain(runs: int, folder: Path) -> tuple[float, float]:
    async with InlineSqliteSaver.open(str(folder / "chain.db")) as saver:
        flow = compile_workflow(load_workflow(chain_document(CHAIN)), saver)
        hand = hand_written_chain(CHAIN, saver)
        ctx = RunContext("bench")
        await time_runs(flow, lambda: {"inputs": {}, "run": {}}, 3, ctx)  # warm up both
        await time_runs(hand, dict, 3)
        flow_times, hand_times = [], []
        for _ in range(runs):  # interleaved, so drift hits both alike
            flow_times += await time_runs(flow, lambda: {"inputs": {}, "run": {}}, 1, ctx)
            hand_times += await time_runs(hand, dict, 1)
    return statistics.median(flow_times), statistics.median(hand_times)


async def bench_foreach(items: int, folder: Path) -> tuple[float, float]:
    doc = {"id": "fan", "nodes": [
        {"id": "each", "type": "foreach",
         "config": {"items": f"range({items}) | list", "max_concurrency": 64,
                    "body": {"nodes": [{"id": "double", "type": "transform",
                                        "config": {"output": "{{ item * 2 }}"}}]}}}],
        "settings": {"max_concurrency": 64}}
    gc.collect()
    before = rss_mb()
    async with InlineSqliteSaver.open(str(folder / "fan.db")) as saver:
        graph = compile_workflow(load_workflow(doc), saver)
        start = time.perf_counter()
        state = await graph.ainvoke({"inputs": {}, "run": {}},
                                    {"configurable": {"thread_id": "fan"}},
                                    context=RunContext("fan"), durability="sync")
        elapsed = time.perf_counter() - start
    assert state["outputs"]["each"][-1] == 2 * (items - 1)
    return elapsed, rss_mb() - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        flow, hand = run_sync(bench_chain(args.runs, folder))
        fan_s, fan_mb = run_sync(bench_foreach(args.items, folder))
    rows = [
        ("100-node transform chain, Flowloom (median)", f"{flow * 1000:.1f} ms", ""),
        ("100-node chain, hand-written LangGraph (median)", f"{hand * 1000:.1f} ms", ""),
        ("ratio Flowloom / hand-written", f"{flow / hand:.2f}x", "<= 1.25x"),
        (f"foreach over {args.items:,} items, one-node body", f"{fan_s:.2f} s", "< 5 s"),
        ("  peak RSS growth during that foreach", f"{fan_mb:.0f} MB", "< 1024 MB"),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
