"""Flowloom and Prefect side by side, in one run: a chain of 100 tasks and maps of 1,000
and 10,000 items, time per task or item and the states each kept. Prints a table.

    python bench/bench_prefect.py --prefect-venv /tmp/prefect-venv [--chain 100]
                                  [--items 1000,10000] [--chain-runs 5]

Prefect runs in its own virtualenv, never this project's: `--prefect-venv` (or
FLOWLOOM_BENCH_PREFECT_VENV) names it, and it is made there, with the pinned Prefect, when
it does not hold that version yet (PyPI needed once). Prefect goes as a new user runs it
(bench/prefect_flows.py): `@flow`s of `@task`s, its default task runner, and the local
server it starts by itself; its home is a throwaway folder.

Flowloom goes through `execute_workflow_async` (the Python API) on the embedded SQLite
store: a transform chain and a `foreach` with a one-transform body, as in
bench_user_path.py. Each document runs cold (validated and compiled in the measured
run), after a warm-up with other sizes, as Prefect's flows run once after its warm-up;
the chain runs again too, as a workflow run again and again does (compiled once per
content). One run of a 50-ms chain is at the mercy of the machine's other load, so the
warm chain is the median of `--chain-runs` runs, on both sides (Prefect's chain too,
its states from the run that kept the fewest). Both keep their state under /dev/shm (a
RAM disk) when there is one.

"States kept": Prefect's task runs the server holds as COMPLETED once its counts settle;
Flowloom's node states in the run record that say `succeeded`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench.bench_core import chain_document
from bench.bench_user_path import foreach_document
from bench.table import print_table
from flowloom import execute_workflow_async
from flowloom.app.runner import run_sync
from flowloom.app.settings import load_settings
from flowloom.app.stores.sqlite import SqliteStore

PREFECT = "prefect==3.9.1"  # 3.8.8 installs beside a FastAPI its server no longer runs on
TARGET = 20.0
HERE = Path(__file__).resolve().parent


def ram_folder() -> tempfile.TemporaryDirectory[str]:
    """A throwaway folder on the RAM disk where there is one (removed at the end)."""
    shm = Path("/dev/shm")
    return tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None,
                                       prefix="flowloom-bench-")


def prefect_python(venv: Path) -> Path:
    """The venv's Python, holding the pinned Prefect: made or updated when needed."""
    python = venv / "bin" / "python"
    version = PREFECT.split("==")[1]
    if python.exists():
        probe = subprocess.run([str(python), "-c", "import prefect; print(prefect.__version__)"],
                               capture_output=True, text=True, check=False)
        if probe.stdout.strip() == version:
            return python
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {PREFECT} into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", PREFECT], check=True)
    return python


def run_prefect(python: Path, chain: int, sizes: list[int], home: Path,
                chain_runs: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(home), "PYTHONPATH": ""}
    done = subprocess.run([str(python), str(HERE / "prefect_flows.py"), str(chain),
                           ",".join(map(str, sizes)), str(chain_runs)],
                          capture_output=True, text=True, env=env, cwd=home, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"Prefect's side failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(lines[-1].removeprefix("RESULT ")))


async def run_flowloom(chain: int, sizes: list[int], folder: Path,
                       chain_runs: int) -> list[dict[str, Any]]:
    path = folder / "flowloom.db"
    settings = load_settings(store=f"sqlite:///{path}")
    store = SqliteStore(path)
    results = []
    try:
        for warm in (chain_document(3), foreach_document(3)):
            await execute_workflow_async(warm, settings=settings, store=store)
        runs = [("chain", chain, chain_document(chain), 1),
                ("chain, again", chain, None, chain_runs),
                *[("map", n, foreach_document(n), 1) for n in sizes]]
        for kind, n, document, times in runs:
            document = document or results[-1]["document"]  # the same content: compiled
            took, kept = [], n
            for _ in range(times):
                start = time.perf_counter()
                record = await execute_workflow_async(document, settings=settings,
                                                      store=store)
                took.append(time.perf_counter() - start)
                assert record.status == "succeeded", record.errors
                kept = min(kept, sum(s.status == "succeeded"
                                     for key, s in record.node_states.items()
                                     if kind != "map" or key.endswith(".double")))
            results.append({"kind": kind, "n": n, "seconds": statistics.median(took),
                            "kept": kept, "document": document})
    finally:
        await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefect-venv", default=os.environ.get("FLOWLOOM_BENCH_PREFECT_VENV"))
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--items", default="1000,10000")
    parser.add_argument("--chain-runs", type=int, default=5)
    args = parser.parse_args()
    if not args.prefect_venv:
        sys.exit("give Prefect's virtualenv: --prefect-venv DIR or FLOWLOOM_BENCH_PREFECT_VENV"
                 " (made there when missing; never this project's venv)")
    sizes = [int(x) for x in args.items.split(",") if x]
    python = prefect_python(Path(args.prefect_venv))
    load = os.getloadavg()[0]
    with ram_folder() as tmp:
        folder = Path(tmp)
        prefect = run_prefect(python, args.chain, sizes, folder, args.chain_runs)
        flowloom = run_sync(run_flowloom(args.chain, sizes, folder, args.chain_runs))
    rows = []
    theirs_by_run = [prefect["runs"][0], *prefect["runs"]]  # both chains against Prefect's
    for theirs, ours in zip(theirs_by_run, flowloom, strict=True):
        unit = "item" if ours["kind"] == "map" else "task"
        what = (f"map over {ours['n']:,} items" if ours["kind"] == "map"
                else f"chain of {ours['n']}" + (
                    f" (median of {args.chain_runs}; Flowloom: the same document again, "
                    "compiled)" if "again" in ours["kind"]
                    else f" (Prefect: median of {args.chain_runs}; Flowloom: a new document)"))
        p_ms, f_ms = 1000 * theirs["seconds"] / theirs["n"], 1000 * ours["seconds"] / ours["n"]
        completed = theirs["states"].get("COMPLETED", 0)
        rows += [
            (f"{what}: Prefect {prefect['prefect']}, ms per {unit}", f"{p_ms:.2f}", ""),
            (f"{what}: Flowloom, ms per {unit}", f"{f_ms:.3f}", ""),
            ("  ratio Prefect / Flowloom", f"{p_ms / f_ms:.1f}x", f">= {TARGET:g}x"),
            ("  states kept: Prefect / Flowloom (of each)",
             f"{completed:,} / {ours['kept']:,} ({ours['n']:,})",
             "all / all"),
        ]
        if completed != theirs["n"]:
            rows.append(("  Prefect's task runs by state", json.dumps(theirs["states"]), ""))
    print_table(rows)
    print(f"load average: {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
