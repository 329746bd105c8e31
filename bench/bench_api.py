"""Load on `flowloom serve` (embedded store) from wrk, a separate process on loopback.

    python bench/bench_api.py [--seconds 10] [--connections 16] [--processes 1 2]
                              [--dir /dev/shm]

For each process count: GET /health as the baseline of the HTTP stack, sync executions
of a 5-node transform workflow, then async submissions of it, waiting until every
queued run has finished and checking that all succeeded; beside the rates, the server's
CPU per request (wrk runs on the same cores). Then, in this process, the CPU one run of
the same workflow takes through the compiled engine (in memory, on SQLite) and the
Python API, in GET /health requests: where a sync execution's time goes. Needs `wrk`
(Debian: apt-get install wrk). Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import print_table
from tests.servers import free_port

WORKFLOW = {
    "id": "bench", "nodes": [
        {"id": "n0", "type": "transform", "config": {"output": "{{ inputs.x }}"}},
        *({"id": f"n{i}", "type": "transform",
           "config": {"output": f"{{{{ outputs.n{i - 1} + 1 }}}}"}} for i in range(1, 5))],
    "edges": [{"source": f"n{i - 1}", "target": f"n{i}"} for i in range(1, 5)],
}
LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def server_cpu_s(pid: int) -> float | None:
    """CPU seconds of the server process and its children (uvicorn's workers) so far;
    None without Linux's /proc. wrk shares the cores, so rates alone mix its work in."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a process that ended meanwhile
            if int(stat.parent.name) == pid or int(fields[1]) == pid:  # itself, or a child
                total += (int(fields[11]) + int(fields[12])) / tick
    except OSError:
        return None
    return total


def run_wrk(url: str, body: dict[str, Any] | None, seconds: int, connections: int,
            folder: Path, pid: int) -> dict[str, Any]:
    before = server_cpu_s(pid)
    script = []
    if body is not None:
        (folder / "post.lua").write_text(LUA.format(body=json.dumps(body)))
        script = ["-s", str(folder / "post.lua")]
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          *script, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {p: _ms(v, u) for p, v, u in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)", out)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    after = server_cpu_s(pid)
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu_ms = (after - before) * 1000 / count if before is not None and after else None
    return {"rate": rate, "p50": pct["50"], "p99": pct["99"], "cpu_ms": cpu_ms,
            "errors": int(non2xx.group(1)) if non2xx else 0}


def wait_until_idle(base: str, timeout_s: float = 600) -> float:
    """Seconds until no run is queued or running (the async runs have all finished)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        busy = [httpx.get(f"{base}/executions", params={"status": s, "limit": 1}).json()
                ["items"] for s in ("queued", "running")]
        if not any(busy):
            return time.monotonic() - start
        time.sleep(0.5)
    raise TimeoutError(f"runs still unfinished after {timeout_s:.0f}s")


def count_runs(base: str, status: str) -> int:
    total, cursor = 0, None
    while True:
        page = httpx.get(f"{base}/executions", params={
            "status": status, "limit": 200, **({"cursor": cursor} if cursor else {})}).json()
        total += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return total


def measure(processes: int, seconds: int, connections: int, folder: Path) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "FLOWLOOM_STORE": f"sqlite:///{folder / f'api{processes}.db'}"}
    server = subprocess.Popen([sys.executable, "-m", "flowloom", "serve", "--port", str(port),
                               "--processes", str(processes)], env=env, cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        httpx.post(f"{base}/workflows", json=WORKFLOW).raise_for_status()
        url = f"{base}/workflows/bench/execute"
        check = httpx.post(url, json={"inputs": {"x": 1}}).json()
        assert check["output"] == 5, check
        results: dict[str, Any] = {
            "health": run_wrk(f"{base}/health", None, seconds, connections, folder,
                              server.pid),
            "sync": run_wrk(url, {"inputs": {"x": 1}}, seconds, connections, folder,
                            server.pid),
            "async": run_wrk(url, {"inputs": {"x": 1}, "mode": "async"}, seconds,
                             connections, folder, server.pid)}
        results["drain_s"] = wait_until_idle(base)
        results["failed"] = count_runs(base, "failed") + count_runs(base, "cancelled")
        results["succeeded"] = count_runs(base, "succeeded")
        return results
    finally:
        server.terminate()
        server.wait(timeout=60)


def in_process_cpu_ms(folder: Path, runs: int = 300) -> dict[str, float]:
    """Where a sync execution's time goes, in this process (CPU ms per run, median of 5
    rounds): the same workflow compiled and invoked directly on an in-memory saver and on
    the SQLite saver (durability="sync"), and through `execute_workflow_async`."""
    import statistics
    import uuid

    from langgraph.checkpoint.memory import InMemorySaver

    from flowloom import compile_workflow, execute_workflow_async, load_workflow
    from flowloom.app.runner import run_sync
    from flowloom.app.settings import load_settings
    from flowloom.app.shared import shared_resources
    from flowloom.app.tuning import paced_collection
    from flowloom.graphs.context import RunContext

    async def measure() -> dict[str, float]:
        settings = load_settings(store=f"sqlite:///{folder / 'in_process.db'}")
        store, _ = await shared_resources(settings)
        async with store.checkpointer() as saver:
            on_disk = compile_workflow(load_workflow(WORKFLOW), saver)
        in_memory = compile_workflow(load_workflow(WORKFLOW), InMemorySaver())

        async def engine(graph: Any) -> None:
            await graph.ainvoke({"inputs": {"x": 1}, "run": {}},
                                {"configurable": {"thread_id": uuid.uuid4().hex}},
                                context=RunContext("bench"), durability="sync")

        ways = {"memory": lambda: engine(in_memory), "sqlite": lambda: engine(on_disk),
                "api": lambda: execute_workflow_async(WORKFLOW, {"x": 1}, settings=settings)}
        took: dict[str, list[float]] = {name: [] for name in ways}
        with paced_collection():  # as around a run in the server
            for way in ways.values():
                for _ in range(20):
                    await way()
            for _ in range(5):
                for name, way in ways.items():
                    start = time.process_time()
                    for _ in range(runs // 5):
                        await way()
                    took[name].append((time.process_time() - start) * 1000 / (runs // 5))
        return {name: statistics.median(values) for name, values in took.items()}

    return run_sync(measure())


def cpu_ratio(sync: dict[str, Any], health: dict[str, Any]) -> str:
    if sync["cpu_ms"] is None or not health["cpu_ms"]:
        return "n/a"
    return (f"{sync['cpu_ms']:.2f} / {health['cpu_ms']:.3f} ms = "
            f"{sync['cpu_ms'] / health['cpu_ms']:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None,
                        help="where the store goes (default: the RAM disk; a folder on a "
                             "real disk shows what fsync adds)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_api needs wrk on the PATH (apt-get install wrk)")
    rows: list[tuple[str, str, str]] = []
    health_cpu: list[float | None] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for processes in args.processes:
            got = measure(processes, args.seconds, args.connections, Path(tmp))
            sync, queued, health = got["sync"], got["async"], got["health"]
            rows += [
                (f"serve --processes {processes}", "", ""),
                ("  GET /health (baseline: HTTP + store ping)", f"{health['rate']:.0f}/s", ""),
                ("  sync executions of a 5-node workflow", f"{sync['rate']:.0f}/s", ">= 200/s"),
                ("    cost of one, in GET /health requests",
                 f"{health['rate'] / sync['rate']:.0f}x", "<= 8x"),
                ("    server CPU per request: sync execution / GET /health",
                 cpu_ratio(sync, health), ""),
                ("    p50 / p99 latency", f"{sync['p50']:.1f} / {sync['p99']:.1f} ms",
                 "p99 < 100 ms"),
                ("  async submissions", f"{queued['rate']:.0f}/s", ">= 1,000/s"),
                ("    p50 / p99 latency", f"{queued['p50']:.1f} / {queued['p99']:.1f} ms", ""),
                ("    all queued runs finished", f"{got['drain_s']:.1f} s after the last", ""),
                ("  runs succeeded / failed", f"{got['succeeded']:,} / {got['failed']}", "all / 0"),
                ("  non-2xx answers", str(sync["errors"] + queued["errors"]
                                          + health["errors"]), "0"),
            ]
            health_cpu.append(health["cpu_ms"])
        inside = in_process_cpu_ms(Path(tmp))
    per_health = health_cpu[0]  # the first server's GET /health
    rows.append((f"in this process, CPU per run of the same workflow (in GET /health "
                 f"requests of `serve --processes {args.processes[0]}`)", "", ""))
    for key, label in (("memory", "  compiled engine, in-memory saver"),
                       ("sqlite", "  compiled engine, SQLite saver, durability=sync"),
                       ("api", "  execute_workflow_async (record, events, lease)")):
        times = f" = {inside[key] / per_health:.1f}x" if per_health else ""
        rows.append((label, f"{inside[key]:.2f} ms{times}", ""))
    where = "a RAM disk" if tmp.startswith("/dev/shm") else f"disk ({args.dir or tmp})"
    print(f"wrk, {args.connections} connections, {args.seconds} s per measure, "
          f"embedded SQLite store on {where}, default pool size; load average "
          f"{os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} cores)")
    print_table(rows)


if __name__ == "__main__":
    main()
