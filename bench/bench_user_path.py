"""Flowloom where users run it: the Python API, the `flowloom run` command and a large
foreach, each against the compiled engine underneath. Prints a table.

    python bench/bench_user_path.py [--runs 21] [--items 1000,10000]

1. A 100-node transform chain through `execute_workflow_async` (warm: the same document
   again, so validation and compilation are cached) vs the compiled graph invoked directly
   (`bench_core.py`'s Flowloom side), interleaved, on the same SQLite store; median of N.
2. `flowloom run` of the same chain as a whole process: wall time, median of 5.
3. A foreach of 1,000 and 10,000 items (`--items 1000,10000,100000` for more) through
   `execute_workflow_async`: time, peak RSS growth and the bytes its checkpoints and
   writes take per item.

Stores live on /dev/shm (a RAM disk) where there is one, so fsync costs nothing; the
load average printed at the end says how busy the machine was.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench.bench_core import chain_document
from bench.table import print_table
from flowloom import compile_workflow, execute_workflow_async, load_workflow
from flowloom.app.runner import run_sync
from flowloom.app.settings import load_settings
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.graphs.context import RunContext

CHAIN = 100
ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench_api_chain(runs: int, folder: Path) -> tuple[float, float]:
    """Median seconds of one chain run through the Python API, and through the engine."""
    path = folder / "chain.db"
    settings = load_settings(store=f"sqlite:///{path}")
    store = SqliteStore(path)
    document = chain_document(CHAIN)
    try:
        async with store.checkpointer() as saver:
            engine = compile_workflow(load_workflow(document), saver)

        async def api() -> float:
            start = time.perf_counter()
            record = await execute_workflow_async(document, settings=settings, store=store)
            assert record.status == "succeeded", record.errors
            return time.perf_counter() - start

        async def direct() -> float:
            config = {"configurable": {"thread_id": uuid.uuid4().hex}}
            start = time.perf_counter()
            await engine.ainvoke({"inputs": {}, "run": {}}, config, context=RunContext("b"),
                                 durability="sync")
            return time.perf_counter() - start

        for _ in range(3):  # warm both
            await api()
            await direct()
        api_times, direct_times = [], []
        for _ in range(runs):  # interleaved, so drift hits both alike
            api_times.append(await api())
            direct_times.append(await direct())
    finally:
        await store.close()
    return statistics.median(api_times), statistics.median(direct_times)


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_cli_run(folder: Path, runs: int = 5) -> tuple[float, float]:
    """Median wall seconds of `flowloom run chain.json` as a fresh process, and median
    CPU seconds (what the wall time is on an idle machine: the run uses one core)."""
    doc = folder / "chain.json"
    doc.write_text(json.dumps(chain_document(CHAIN)))
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "FLOWLOOM_STORE": f"sqlite:///{folder / 'cli.db'}"}
    times, cpu = [], []
    for _ in range(runs):
        start, used = time.perf_counter(), child_cpu()
        subprocess.run([sys.executable, "-m", "flowloom", "run", str(doc), "--json"],
                       env=env, cwd=folder, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
        cpu.append(child_cpu() - used)
    return statistics.median(times), statistics.median(cpu)


def foreach_document(items: int) -> dict[str, Any]:
    return {"id": f"fan{items}", "settings": {"max_concurrency": 64}, "nodes": [
        {"id": "each", "type": "foreach",
         "config": {"items": f"range({items}) | list", "max_concurrency": 64,
                    "body": {"nodes": [{"id": "double", "type": "transform",
                                        "config": {"output": "{{ item * 2 }}"}}]}}}]}


def checkpoint_bytes(path: Path, execution_id: str) -> int:
    with sqlite3.connect(path) as db:
        (saved,) = db.execute("SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0)"
                              " FROM checkpoints WHERE thread_id = ?", (execution_id,)).fetchone()
        (written,) = db.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes "
                                "WHERE thread_id = ?", (execution_id,)).fetchone()
    return int(saved) + int(written)


async def bench_foreach(items: int, folder: Path) -> tuple[float, float, float, float]:
    """Seconds, CPU seconds, peak RSS growth in MB and checkpoint bytes per item of one
    foreach run."""
    path = folder / f"fan{items}.db"
    settings = load_settings(store=f"sqlite:///{path}")
    store = SqliteStore(path)
    gc.collect()
    before = rss_mb()
    try:
        start, used = time.perf_counter(), time.process_time()
        record = await execute_workflow_async(foreach_document(items), settings=settings,
                                              store=store)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - used
    finally:
        await store.close()
    assert record.status == "succeeded", record.errors
    if isinstance(record.output, list):  # past 256 KiB the record keeps a truncated stand-in
        assert record.output[-1] == 2 * (items - 1)
    return (elapsed, cpu, rss_mb() - before,
            checkpoint_bytes(path, record.execution_id) / items)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--items", default="1000,10000")
    parser.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None,
                        help="where the stores go (default: the RAM disk; a folder on a "
                             "real disk shows what fsync adds)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        api, direct = run_sync(bench_api_chain(args.runs, folder))
        cli, cli_cpu = bench_cli_run(folder)
        fans = [(n, run_sync(bench_foreach(n, folder)))
                for n in (int(x) for x in args.items.split(","))]
    rows = [
        ("100-node chain, execute_workflow_async (warm, median)", f"{api * 1000:.1f} ms", ""),
        ("100-node chain, compiled engine invoked directly (median)",
         f"{direct * 1000:.1f} ms", ""),
        ("ratio Python API / compiled engine", f"{api / direct:.2f}x", "<= 1.2x"),
        ("`flowloom run` of that chain, whole process (median of 5)", f"{cli:.2f} s", "< 1 s"),
        ("  its CPU time (the wall time on an idle machine)", f"{cli_cpu:.2f} s", ""),
    ]
    for n, (seconds, cpu, mb, per_item) in fans:
        target = {10_000: "< 3 s", 100_000: "< 30 s"}.get(n, "")
        rows += [
            (f"foreach over {n:,} items via execute_workflow_async", f"{seconds:.2f} s",
             target),
            ("  its CPU time", f"{cpu:.2f} s", ""),
            ("  peak RSS growth during that foreach", f"{mb:.0f} MB",
             "< 200 MB" if n == 10_000 else ""),
            ("  checkpoint + write bytes per item", f"{per_item:.0f} B", "flat"),
        ]
    print_table(rows)
    where = "a RAM disk" if tmp.startswith("/dev/shm") else "disk"
    print(f"load average: {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} cores); stores on {where}")


if __name__ == "__main__":
    main()
