"""The run viewer's speed, measured as a user meets it. Prints a table.

    python bench/bench_ui.py [--runs 100000] [--nodes 1000]

1. The first page of runs with N runs in the store: the server time of the API call the
   runs page makes (`GET /executions?limit=25`), median of 20, on `flowloom serve`.
2. The page of a run of a 1,000-node workflow in headless Chromium (/usr/bin/chromium):
   from navigation until its graph and timeline hold every node, and a click on a node
   opens its panel.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench.table import print_table
from flowloom.app.records import RunRecord
from flowloom.app.runner import execute_workflow_async
from flowloom.app.settings import load_settings
from flowloom.app.stores.sqlite import SqliteStore
from tests.servers import free_port


async def seed(path: Path, runs: int, nodes: int) -> str:
    """`runs` stored run records, and one real run of a `nodes`-node chain."""
    store = SqliteStore(path)
    now = datetime.now(UTC)
    for start in range(0, runs, 1000):
        await asyncio.gather(*(store.save_run(RunRecord(
            execution_id=f"seed{i:06d}", workflow_id="seed", workflow_version=1,
            status="succeeded", created_at=now - timedelta(seconds=runs - i)))
            for i in range(start, min(start + 1000, runs))))
    ids = [f"n{i}" for i in range(nodes)]
    doc = {"id": "big", "nodes": [{"id": n, "type": "transform", "config": {"output": i}}
                                  for i, n in enumerate(ids)],
           "edges": [{"source": a, "target": b} for a, b in itertools.pairwise(ids)]}
    record = await execute_workflow_async(doc, settings=load_settings(store=f"sqlite:///{path}"),
                                          store=store, execution_id="big-run")
    assert record.status == "succeeded", record.errors
    await store.close()
    return record.execution_id


def api_ms(base: str) -> float:
    times = []
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/executions?limit=25").raise_for_status()
        for _ in range(20):
            started = time.perf_counter()
            client.get("/executions?limit=25").raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def page_ms(base: str, execution_id: str, nodes: int) -> tuple[float, float]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        started = time.perf_counter()
        page.goto(f"{base}/ui/runs/{execution_id}")
        page.wait_for_function(
            f"document.querySelectorAll('svg g.node').length >= {nodes} && "
            f"document.querySelectorAll('button.bar').length >= {nodes}", timeout=60_000)
        shown = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        page.locator(f'svg g.node[data-node-id="n{nodes // 2}"]').click()
        page.wait_for_function(
            f"document.querySelector('#panel-node')?.textContent === 'n{nodes // 2}'")
        clicked = (time.perf_counter() - started) * 1000
        browser.close()
    return shown, clicked


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="flowloom-ui-bench-"))
    path = folder / "ui.db"
    execution_id = asyncio.run(seed(path, args.runs, args.nodes))
    port = free_port()
    env = {**os.environ, "FLOWLOOM_STORE": f"sqlite:///{path}"}
    server = subprocess.Popen([sys.executable, "-m", "flowloom", "serve", "--port", str(port)],
                              env=env, cwd=folder, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        listing = api_ms(base)
        shown, clicked = page_ms(base, execution_id, args.nodes)
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows: list[tuple[str, str, str]] = [
        (f"first page of runs, {args.runs:,} runs stored (API call, median of 20)",
         f"{listing:.1f} ms", "< 150 ms"),
        (f"page of a {args.nodes:,}-node run: graph and timeline drawn", f"{shown:.0f} ms",
         "< 1.5 s"),
        ("  then a click on a node opens its panel", f"{clicked:.0f} ms", ""),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
