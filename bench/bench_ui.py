"""The run viewer's speed, measured as a user meets it. Prints a table.

    python bench/bench_ui.py [--runs 100000] [--nodes 1000] [--items 10000]

1. The first page of runs with N runs in the store: the server time of the API call the
   runs page makes (`GET /executions?limit=25`), median of 20, on `flowloom serve`.
2. The page of a run of a 1,000-node workflow in headless Chromium (/usr/bin/chromium):
   from navigation until its graph and timeline hold every node; then a click on a node
   until its panel shows, at once (the page still takes in the run's event log) and once
   it settled (median of 5, also timed inside the page: click to the next frame drawn).
3. A live 10,000-item `foreach` watched by its run page, against the same run watched by
   an empty page (the baseline: what the machine's load alone does to frames): the
   longest and 95th-percentile gap between animation frames while it runs, the page's
   long tasks, the run's own time, a click on the loop node while it runs, and how long
   after the run's end the page shows it.
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
from typing import Any

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


NEXT_FRAME = "() => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)))"
# Click a graph node from inside the page; resolves once the frame after it is drawn.
CLICK_IN_PAGE = """async (id) => {
  const started = performance.now();
  document.querySelector(`svg g.node[data-node-id="${id}"]`).dispatchEvent(
    new MouseEvent("click", { bubbles: true }));
  await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
  if (document.querySelector("#panel-node")?.textContent !== id) throw new Error(id);
  return performance.now() - started;
}"""


def click_ms(page: Any, node: str) -> float:
    started = time.perf_counter()
    page.locator(f'svg g.node[data-node-id="{node}"]').click()
    page.wait_for_function(f"document.querySelector('#panel-node')?.textContent === '{node}'")
    return (time.perf_counter() - started) * 1000


def page_ms(browser: Any, base: str, execution_id: str, nodes: int) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    started = time.perf_counter()
    page.goto(f"{base}/ui/runs/{execution_id}")
    page.wait_for_function(
        f"document.querySelectorAll('svg g.node').length >= {nodes} && "
        f"document.querySelectorAll('button.bar').length >= {nodes}", timeout=60_000)
    page.evaluate(NEXT_FRAME)  # laid out and painted, not only in the DOM
    out = {"shown": (time.perf_counter() - started) * 1000,
           "first_click": click_ms(page, f"n{nodes // 2}")}
    page.wait_for_timeout(2000)  # settled: the event log is read and applied
    picks = [f"n{nodes * k // 6}" for k in range(1, 6)]
    out["click"] = statistics.median(click_ms(page, node) for node in picks)
    out["click_in_page"] = statistics.median(page.evaluate(CLICK_IN_PAGE, node)
                                             for node in reversed(picks))
    page.close()
    return out


# Every animation frame's time (ms since the epoch) and every long task, from the start.
FRAME_PROBE = """window.__frames = []; window.__long = [];
(function frame() { window.__frames.push(performance.timeOrigin + performance.now());
                    requestAnimationFrame(frame); })();
new PerformanceObserver((list) => { for (const e of list.getEntries())
  window.__long.push([performance.timeOrigin + e.startTime, e.duration]); })
  .observe({ type: "longtask", buffered: true });"""


def foreach_doc(items: int) -> dict[str, Any]:
    return {"id": "live-each", "nodes": [
        {"id": "each", "type": "foreach", "config": {
            "items": f"{{{{ range({items}) | list }}}}", "max_concurrency": 64,
            "body": {"nodes": [{"id": "double", "type": "transform",
                                "config": {"output": "{{ item * 2 }}"}}]}}},
        {"id": "end", "type": "end", "config": {"output": "{{ each | length }}"}}],
        "edges": [{"source": "each", "target": "end"}]}


def watch_foreach(browser: Any, base: str, items: int, run_page: bool) -> dict[str, float]:
    """One run of the foreach, watched by its run page or by an empty page."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.add_init_script(FRAME_PROBE)
    with httpx.Client(base_url=base, timeout=60) as client:
        if run_page:
            page.goto(f"{base}/ui")  # modules cached, as for a user who clicks through
        else:
            page.goto(f"{base}/ui/static/app.css")
            page.evaluate(FRAME_PROBE)
        execution_id = client.post("/workflows/live-each/execute",
                                   json={"mode": "async"}).json()["execution_id"]
        out: dict[str, float] = {}
        if run_page:
            page.goto(f"{base}/ui/runs/{execution_id}")
            page.wait_for_function(  # a tenth of the items seen
                "parseInt((document.querySelector('svg g.node[data-node-id=\"each\"] .counts')"
                f"?.textContent || '0').replace(/,/g, '')) >= {items // 10}", timeout=120_000)
            started = time.perf_counter()
            page.evaluate(CLICK_IN_PAGE, "each")
            out["click_live"] = (time.perf_counter() - started) * 1000
            page.locator("#run-status .badge", has_text="succeeded").wait_for(timeout=300_000)
            seen = time.time() * 1000
        for _ in range(3000):
            record = client.get(f"/executions/{execution_id}").json()
            if record["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert record["status"] == "succeeded", record["status"]
    if run_page:
        page.wait_for_function(f"document.querySelector('svg g.node[data-node-id=\"each\"] "
                               f".counts').textContent === '{items:,} items'")
    begin = datetime.fromisoformat(record["started_at"]).timestamp() * 1000
    end = datetime.fromisoformat(record["finished_at"]).timestamp() * 1000
    frames = [t for t in page.evaluate("window.__frames") if begin <= t <= end]
    gaps = sorted(b - a for a, b in itertools.pairwise(frames))
    long_tasks = [d for t, d in page.evaluate("window.__long") if begin <= t <= end]
    out.update(run_s=(end - begin) / 1000, max_gap=gaps[-1],
               p95_gap=gaps[int(len(gaps) * 0.95)], long_ms=sum(long_tasks))
    if run_page:
        out["end_shown"] = seen - end
    page.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--items", type=int, default=10_000)
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
        httpx.post(f"{base}/workflows", json=foreach_doc(args.items)).raise_for_status()
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox"])
            big = page_ms(browser, base, execution_id, args.nodes)
            idle = watch_foreach(browser, base, args.items, run_page=False)
            live = watch_foreach(browser, base, args.items, run_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    n = f"{args.items:,}-item"
    rows: list[tuple[str, str, str]] = [
        (f"first page of runs, {args.runs:,} runs stored (API call, median of 20)",
         f"{listing:.1f} ms", "< 150 ms"),
        (f"page of a {args.nodes:,}-node run: graph and timeline drawn",
         f"{big['shown']:.0f} ms", "< 1.5 s"),
        ("  a click on a node at once: its panel shows", f"{big['first_click']:.0f} ms", ""),
        ("  settled, median of 5 clicks (Playwright)", f"{big['click']:.0f} ms", ""),
        ("  settled, click to next frame inside the page", f"{big['click_in_page']:.0f} ms",
         ""),
        (f"live {n} foreach, run page: longest frame gap", f"{live['max_gap']:.0f} ms",
         "< 200 ms (no freeze)"),
        ("  the same run beside an empty page (baseline)", f"{idle['max_gap']:.0f} ms", ""),
        ("  95th percentile frame gap, run page / empty page",
         f"{live['p95_gap']:.0f} / {idle['p95_gap']:.0f} ms", ""),
        ("  long tasks in all, run page / empty page",
         f"{live['long_ms']:.0f} / {idle['long_ms']:.0f} ms", ""),
        ("  the run's time, watched / beside an empty page",
         f"{live['run_s']:.1f} / {idle['run_s']:.1f} s", ""),
        ("  ratio watched / baseline", f"{live['run_s'] / idle['run_s']:.2f}x", ""),
        ("  a click on the loop node while it runs", f"{live['click_live']:.0f} ms", ""),
        ("  the page shows the end, after the run's end", f"{live['end_shown']:.0f} ms", ""),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
