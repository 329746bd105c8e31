"""What one owner per run costs: fenced runs against the same runs unfenced, and how long
a run waits between its owner's death and another process continuing it. Prints a table.

    python bench/bench_fencing.py [--runs 15] [--trials 3] [--stale-after 3]

1. Fenced vs unfenced on the same path, in the same process, interleaved (median of N):
   a 100-node transform chain through the Python API on SQLite; sync executions of a
   5-node workflow through the HTTP API (the ASGI app in process, 8 at a time); a
   1,000-item foreach on SQLite; the 100-node chain on MongoDB (SecantusDB, when the
   test extra is installed). Unfenced is the code path with the lease never taken: the
   record is upserted and checkpoint writes are not checked (as before fencing).
2. Takeover: `flowloom run` is SIGKILLed in the middle of a node while `flowloom serve`
   runs beside it on the same store; the time from the kill to the server's `run.started`
   of that run and to its first node start, with FLOWLOOM_STALE_AFTER_S as given. The
   server looks for stale runs every second (RECOVER_EVERY_S).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench.bench_api import WORKFLOW
from bench.bench_core import chain_document
from bench.table import print_table
from flowloom import execute_workflow_async
from flowloom.app.api.main import create_app
from flowloom.app.runner import run_sync
from flowloom.app.settings import Settings, load_settings
from flowloom.app.stores import open_store, sqlite_saver
from flowloom.app.stores.lease import LEASE_KEY, Lease, lease_of
from tests.servers import free_port
from tests.stored import events

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def unfenced() -> Iterator[None]:
    """The lease is never taken: records are upserted, checkpoint writes go unchecked."""
    moving_to, moved_to = Lease.moving_to, Lease.moved_to
    Lease.moving_to = lambda self, token: ()  # type: ignore[method-assign,assignment]
    Lease.moved_to = lambda self, token: None  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Lease.moving_to, Lease.moved_to = moving_to, moved_to  # type: ignore[method-assign]


# Median wall s fenced, unfenced; median of each round's fenced/unfenced ratio, in wall
# and in CPU time (a round's two runs are next to each other: the load they met is alike).
Timing = tuple[float, float, float, float]


async def compare(once: Callable[[], Awaitable[None]], runs: int) -> Timing:
    """`once` fenced and unfenced, interleaved (and in turns first) so drift hits both.
    CPU time is this process's: on a shared machine it moves less than wall time, and a
    SQLite run spends all its time here."""
    async def timed() -> tuple[float, float]:
        gc.collect()  # a full collection lands in neither run: it would favour one side
        wall, cpu = time.perf_counter(), time.process_time()
        await once()
        return time.perf_counter() - wall, time.process_time() - cpu

    fenced, free = [], []
    for round_ in range(runs + 2):
        if round_ % 2:  # which goes first alternates: neither gets the other's warm-up
            guarded = await timed()
        with unfenced():
            plain = await timed()
        if not round_ % 2:
            guarded = await timed()
        if round_ >= 2:  # the first two warm caches for both
            fenced.append(guarded)
            free.append(plain)
    pairs = list(zip(fenced, free, strict=True))
    return (statistics.median(t[0] for t in fenced), statistics.median(t[0] for t in free),
            statistics.median(f[0] / u[0] for f, u in pairs),
            statistics.median(f[1] / u[1] for f, u in pairs))


def row(name: str, timing: Timing, target: str) -> tuple[str, str, str]:
    wall, free_wall, ratio, cpu_ratio = timing
    return (f"{name}: fenced / unfenced",
            f"{wall * 1000:.1f} / {free_wall * 1000:.1f} ms, {ratio:.3f}x "
            f"(CPU {cpu_ratio:.3f}x)", target)


async def bench_python_api(settings: Settings, document: dict[str, Any],
                           runs: int) -> Timing:
    store = open_store(settings)  # one store for every run, as in a server

    async def once() -> None:
        record = await execute_workflow_async(document, settings=settings, store=store)
        assert record.status == "succeeded", record.errors

    try:
        return await compare(once, runs)
    finally:
        await store.close()


async def bench_http(settings: Settings, runs: int, concurrent: int = 8) -> Timing:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            (await client.post("/workflows", json=WORKFLOW)).raise_for_status()

            async def once() -> None:
                answers = await asyncio.gather(*(client.post(
                    "/workflows/bench/execute", json={"inputs": {"x": 1}})
                    for _ in range(concurrent)))
                assert all(a.json()["output"] == 5 for a in answers), answers[0].text
            return await compare(once, runs)


def foreach_document(items: int) -> dict[str, Any]:
    return {"id": f"fan{items}", "nodes": [{"id": "each", "type": "foreach", "config": {
        "items": f"range({items}) | list", "max_concurrency": 64,
        "body": {"nodes": [{"id": "double", "type": "transform",
                            "config": {"output": "{{ item * 2 }}"}}]}}}]}


async def bench_check(settings: Settings, document: dict[str, Any],
                      calls: int = 20_000) -> tuple[int, float, float]:
    """The fence's own work on SQLite, apart from the noise of whole runs: how many
    checkpoint writes one run fences, what one check costs (the same read, on the same
    store, `calls` times inside one transaction), and the run's median time."""
    store = open_store(settings)
    fenced_writes = 0
    fenced = sqlite_saver._fenced

    def counting(config: Any, write: Any) -> Any:
        nonlocal fenced_writes
        fenced_writes += lease_of(config) is not None
        return fenced(config, write)

    try:
        record = await execute_workflow_async(document, settings=settings, store=store)
        sqlite_saver._fenced = counting  # type: ignore[assignment]
        try:
            times = []
            for _ in range(5):
                fenced_writes = 0
                start = time.perf_counter()
                await execute_workflow_async(document, settings=settings, store=store)
                times.append(time.perf_counter() - start)
        finally:
            sqlite_saver._fenced = fenced  # type: ignore[assignment]
        stored = await store.get_run(record.execution_id)
        assert stored is not None and stored.updated_at is not None
        lease = Lease(record.execution_id, stored.updated_at)
        check = fenced({"configurable": {LEASE_KEY: lease}}, lambda conn: None)
        db = await store._db()  # type: ignore[attr-defined]

        def many(conn: Any) -> float:
            start = time.perf_counter()
            for _ in range(calls):
                check(conn)
            return (time.perf_counter() - start) / calls

        each = await db.write(many)
    finally:
        await store.close()
    return fenced_writes, each, statistics.median(times)


def secantus() -> contextlib.AbstractContextManager[str] | None:
    try:
        from tests.mongo_server import secantus_server
    except ImportError:
        return None
    return secantus_server(Path(tempfile.mkdtemp()) / "secantus.log")


def cost_rows(folder: Path, runs: int) -> list[tuple[str, str, str]]:
    sqlite = load_settings(store=f"sqlite:///{folder / 'cost.db'}")
    rows = []
    cases: list[tuple[str, Callable[[], Awaitable[Timing]]]] = [
        ("Python API, 100-node chain, SQLite",
         lambda: bench_python_api(sqlite, chain_document(100), runs)),
        ("HTTP API, 8 sync executions at once, SQLite", lambda: bench_http(sqlite, runs)),
        ("Python API, foreach of 1,000 items, SQLite",
         lambda: bench_python_api(sqlite, foreach_document(1000), max(3, runs // 3)))]
    for name, case in cases:
        rows.append(row(name, run_sync(case()), "< 1.05x"))
    writes, each, run_s = run_sync(bench_check(sqlite, chain_document(100)))
    rows.append(("the fence's own work in one 100-node chain run, SQLite",
                 f"{writes} checks x {each * 1e6:.1f} us = {writes * each / run_s:.2%}",
                 "< 5%"))
    server = secantus()
    if server is None:
        rows.append(("Python API, 100-node chain, MongoDB", "skipped", "needs secantusdb"))
        return rows
    with server as uri:
        mongo = load_settings(store=f"{uri}/bench_{uuid.uuid4().hex[:6]}")
        timing = run_sync(bench_python_api(mongo, chain_document(100), max(3, runs // 3)))
    rows.append(row("Python API, 100-node chain, MongoDB (SecantusDB)", timing,
                    "(a slot per 16 writes; writes and marker: one insert)"))
    return rows


def takeover(folder: Path, trial: int, stale_after: float) -> tuple[float, float]:
    """Seconds from SIGKILL of the owner to the server's run.started, and to its first
    node start, for one run."""
    store_url = f"sqlite:///{folder / 'takeover.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWLOOM_STORE": store_url,
           "FLOWLOOM_STALE_AFTER_S": str(stale_after)}
    run_id = f"takeover{trial}"
    doc = folder / "takeover.json"
    doc.write_text(json.dumps({"nodes": [
        {"id": "first", "type": "transform", "config": {"output": 1}},
        {"id": "long", "type": "delay", "config": {"seconds": 1.5 * stale_after + 5}},
        {"id": "last", "type": "transform", "config": {"output": 2}}],
        "edges": [{"source": "first", "target": "long"}, {"source": "long", "target": "last"}]}))
    owner = subprocess.Popen([sys.executable, "-m", "flowloom", "run", str(doc),
                              "--execution-id", run_id, "--json"], env=env, cwd=folder,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not any(e.get("node_id") == "long" for e in events(store_url, run_id)):
            assert owner.poll() is None, "the owner stopped by itself"
            time.sleep(0.05)
        time.sleep(0.5)  # a moment into the node, between heartbeats
        killed_at = time.time()
        owner.send_signal(signal.SIGKILL)
    finally:
        owner.kill()
        owner.wait()
    while True:
        log = events(store_url, run_id)
        started = [e for e in log if e["event"] == "run.started"]
        if len(started) == 2:
            after = [e for e in log if e["seq"] > started[1]["seq"]
                     and e["event"] == "node.started"]
            if after:
                return started[1]["at"] - killed_at, after[0]["at"] - killed_at
        time.sleep(0.05)


def takeover_rows(folder: Path, trials: int, stale_after: float) -> list[tuple[str, str, str]]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "FLOWLOOM_STORE": f"sqlite:///{folder / 'takeover.db'}",
           "FLOWLOOM_STALE_AFTER_S": str(stale_after)}
    server = subprocess.Popen([sys.executable, "-m", "flowloom", "serve", "--port", str(port),
                               "--processes", "1"], env=env, cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            time.sleep(0.1)
        times = [takeover(folder, trial, stale_after) for trial in range(trials)]
    finally:
        server.terminate()
        server.wait(timeout=60)
    target = f"<= {stale_after + 2:g} s (lease {stale_after:g} s + 2 s)"
    claimed, continued = [t[0] for t in times], [t[1] for t in times]
    return [
        (f"takeover after SIGKILL: to run.started, median / max of {trials}",
         f"{statistics.median(claimed):.2f} / {max(claimed):.2f} s", target),
        ("takeover after SIGKILL: to the resumed node's start, median / max",
         f"{statistics.median(continued):.2f} / {max(continued):.2f} s", target)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--stale-after", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = cost_rows(folder, args.runs)
        rows += takeover_rows(folder, args.trials, args.stale_after)
    print_table(rows)


if __name__ == "__main__":
    main()
