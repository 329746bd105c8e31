"""Branches that run apart, measured through the Python API. Prints a table.

    python bench/bench_branches.py [--runs 5]

1. Critical path: one branch of 10 `http` calls of 50 ms to a local server beside one of
   2 calls of 250 ms and 260 ms, then a join. Total time against the critical path (the
   longer branch, 510 ms) and against the same workflow compiled without branch subgraphs
   in the same run (LangGraph's lockstep: each step waits for its slowest task, ~910 ms).
2. Fan-out cost: 64 branches of 5 transform nodes against a chain of the same 320 nodes,
   per node, on the embedded store.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench.table import print_table
from flowloom.app.runner import execute_workflow_async
from flowloom.app.services import open_services
from flowloom.app.settings import load_settings
from flowloom.app.stores import open_store
from flowloom.graphs import compile as compiler
from tests.servers import free_port


class LocalServer:
    """The test suite's HTTP server in a process of its own, as a real service would be:
    in a thread of the measuring process it would take the GIL from the run it serves."""

    def __enter__(self) -> str:
        port = free_port()
        code = ("import uvicorn; from tests.servers import FlakyServer; "
                f"uvicorn.run(FlakyServer().app(), host='127.0.0.1', port={port}, "
                "log_level='warning')")
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=root)
        for _ in range(200):  # until it answers
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    return f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the local server did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait()


def call(node_id: str, base: str, seconds: float) -> dict[str, Any]:
    return {"id": node_id, "type": "http",
            "config": {"url": f"{base}/slow?seconds={seconds}&key={node_id}"}}


def critical_path_document(base: str) -> dict[str, Any]:
    fast = [f"f{i}" for i in range(10)]
    nodes = [{"id": "start", "type": "start"}, *[call(n, base, 0.05) for n in fast],
             call("s1", base, 0.25), call("s2", base, 0.26), {"id": "join", "type": "join"}]
    edges = [{"source": a, "target": b} for a, b in
             [*zip(["start", *fast], [*fast, "join"], strict=True),
              ("start", "s1"), ("s1", "s2"), ("s2", "join")]]
    return {"id": "critical", "nodes": nodes, "edges": edges}


def node(node_id: str, index: int, waits: bool) -> dict[str, Any]:
    """A transform, or (`waits`) a `delay` of 0 s: a node that awaits, so its branch is
    compiled into a subgraph (branches that only compute stay in shared steps)."""
    if waits and index == 0:
        return {"id": node_id, "type": "delay", "config": {"seconds": 0}}
    return {"id": node_id, "type": "transform", "config": {"output": index}}


def fan_document(branches: int, length: int, waits: bool) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start"}]
    edges: list[dict[str, str]] = []
    for b in range(branches):
        ids = [f"b{b}_{i}" for i in range(length)]
        nodes += [node(n, i, waits) for i, n in enumerate(ids)]
        edges += [{"source": a, "target": n} for a, n in zip(["start", *ids], ids, strict=False)]
    return {"id": f"fan{branches}{'w' if waits else ''}", "nodes": nodes, "edges": edges}


def chain_document(branches: int, length: int, waits: bool) -> dict[str, Any]:
    """The nodes of `fan_document` in one chain."""
    ids = [f"n{b}_{i}" for b in range(branches) for i in range(length)]
    nodes = [{"id": "start", "type": "start"},
             *[node(n, int(n.rsplit("_", 1)[1]), waits) for n in ids]]
    edges = [{"source": a, "target": b} for a, b in zip(["start", *ids], ids, strict=False)]
    return {"id": f"chain{len(ids)}{'w' if waits else ''}", "nodes": nodes, "edges": edges}


async def timed(document: dict[str, Any], runtime: dict[str, Any], runs: int) -> float:
    await execute_workflow_async(document, **runtime)  # warm: compile, first connections
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        record = await execute_workflow_async(document, **runtime)
        times.append(time.perf_counter() - started)
        assert record.status == "succeeded", record.errors
    return statistics.median(times)


async def lockstep(document: dict[str, Any], runtime: dict[str, Any], runs: int) -> float:
    """The same document compiled with no branch subgraphs: LangGraph's shared steps."""
    found = compiler.find_branches
    compiler.find_branches = lambda *args, **kwargs: []  # type: ignore[assignment]
    try:
        return await timed({**document, "id": document["id"] + "-lockstep"}, runtime, runs)
    finally:
        compiler.find_branches = found


async def main(runs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="flowloom-bench-"))
    settings = load_settings(store=f"sqlite:///{folder / 'bench.db'}",
                             http_allow_private=True)
    # One store and one set of clients for every run, as `flowloom serve` keeps them.
    store = open_store(settings)
    async with open_services(settings) as services:
        runtime = {"settings": settings, "store": store, "services": services}
        with LocalServer() as url:
            doc = critical_path_document(url)
            apart = await timed(doc, runtime, runs)
            shared = await lockstep(doc, runtime, runs)
        rows = await fan_out_rows(runtime, runs)
    await store.close()
    print_table([
        ("critical path: branches apart", f"{apart * 1000:.0f} ms",
         f"<= {1.1 * 510 + 20:.0f} ms (1.1 x 510 ms + 20 ms)"),
        ("critical path: lockstep (same run)", f"{shared * 1000:.0f} ms", "~910 ms"),
        ("ratio apart / critical path", f"{apart / 0.51:.2f}", "<= 1.1 + 20 ms"),
        *rows,
    ])


async def fan_out_rows(runtime: dict[str, Any], runs: int) -> list[tuple[str, str, str]]:
    rows = []
    for waits, what in ((False, "transforms (shared steps)"),
                        (True, "a delay 0 first (subgraphs)")):
        fan = await timed(fan_document(64, 5, waits), runtime, runs) / 321 * 1000
        chain = await timed(chain_document(64, 5, waits), runtime, runs) / 321 * 1000
        rows += [(f"64 branches x 5, {what}, per node", f"{fan:.2f} ms", ""),
                 ("the same 320 nodes in a chain, per node", f"{chain:.2f} ms", ""),
                 ("ratio fan-out / chain per node", f"{fan / chain:.2f}", "<= 2")]
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
