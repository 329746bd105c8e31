"""Prefect's side of bench_prefect.py. Runs under the Prefect virtualenv's Python, never
Flowloom's: it imports nothing from this repository.

    python prefect_flows.py CHAIN MAP_SIZES [CHAIN_RUNS]   e.g.  prefect_flows.py 100 1000,10000 5

Prefect as a new user runs it: `@flow`s of `@task`s, the default task runner, and the
temporary local server Prefect starts when no API URL is configured. Prints one JSON
object: seconds per flow and, per flow, the task runs the server holds in each state
once the counts settle (Prefect records task states in the background). The chain runs
CHAIN_RUNS times (default 1): its seconds are the median, its states the run that kept
the fewest.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from typing import Any
from uuid import UUID

from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.runtime import flow_run

PAGE = 200
SETTLE_S = 2.0  # the counts are final once they stayed the same this long
MAX_WAIT_S = 60.0


@task
def add_one(x: int) -> int:
    return x + 1


@task
def double(x: int) -> int:
    return x * 2


@flow
def chain(n: int) -> tuple[int, str]:
    x = 0
    for _ in range(n):
        x = add_one(x)
    return x, str(flow_run.id)


@flow
def fan(n: int) -> tuple[list[int], str]:
    futures = double.map(range(n))
    return [f.result() for f in futures], str(flow_run.id)


async def _states(run_id: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    async with get_client() as client:
        offset = 0
        while True:
            page = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])),
                limit=PAGE, offset=offset)
            for run in page:
                counts[run.state_type.value if run.state_type else "NONE"] += 1
            if len(page) < PAGE:
                return dict(counts)
            offset += PAGE


def settled_states(run_id: str) -> dict[str, int]:
    last: dict[str, int] | None = None
    stable_since = started = time.monotonic()
    while True:
        now = asyncio.run(_states(run_id))
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= SETTLE_S:
            return now
        if time.monotonic() - started > MAX_WAIT_S:
            return now
        time.sleep(0.5)


def timed(fn: Any, n: int) -> tuple[float, Any, str]:
    start = time.perf_counter()
    value, run_id = fn(n)
    return time.perf_counter() - start, value, run_id


def main() -> None:
    chain_n = int(sys.argv[1])
    sizes = [int(x) for x in sys.argv[2].split(",") if x]
    import prefect

    chain(3)  # warm: starts the local server, registers the flows
    fan(3)
    result: dict[str, Any] = {"prefect": prefect.__version__, "runs": []}
    chain_runs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    times, kept = [], []
    for _ in range(chain_runs):
        seconds, value, run_id = timed(chain, chain_n)
        assert value == chain_n, value
        times.append(seconds)
        kept.append(settled_states(run_id))
    result["runs"].append({"kind": "chain", "n": chain_n, "seconds": statistics.median(times),
                           "states": min(kept, key=lambda s: s.get("COMPLETED", 0))})
    for n in sizes:
        seconds, value, run_id = timed(fan, n)
        assert value == [2 * i for i in range(n)]
        result["runs"].append({"kind": "map", "n": n, "seconds": seconds,
                               "states": settled_states(run_id)})
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
