"""Mutation testing of the core modules with mutmut 3, each against its own tests.

    python bench/mutation.py [--modules graphs/plan.py nodes/ai.py] [--max-children 2]
                             [--keep]

For each module: a scratch copy of the package (flowloom/ with its app, graphs and nodes
links resolved), tests/ and pyproject.toml whose [tool.mutmut] names that module and its
test files only; `mutmut run` there with PYTHONPATH on mutmut's mutants/ folder, so that
tests which start `python -m flowloom` subprocesses import the mutated code too. Prints a
table (module, mutants, killed, survived, timeout) and the diff of every surviving mutant.

Why a scratch copy: mutmut 3 reads one [tool.mutmut] from the working directory, and it
must mutate `flowloom/<pkg>/<module>.py` (the import path) rather than `<pkg>/<module>.py`,
or the trampolines it writes are never imported (the flowloom/ links would be copied as
folders of unmutated files).
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
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MUTMUT = Path(sys.executable).with_name("mutmut")

# module (repository path) -> the test files that pin its behaviour
MODULES: dict[str, list[str]] = {
    "graphs/plan.py": ["tests/graphs/test_flow.py", "tests/graphs/test_plan.py"],
    "graphs/steps.py": ["tests/graphs/test_flow.py", "tests/graphs/test_loops.py",
                        "tests/graphs/test_branches.py", "tests/graphs/test_steps.py",
                        "tests/graphs/test_compile.py"],
    "graphs/expressions.py": ["tests/graphs/test_expressions.py", "tests/graphs/test_budget.py",
                              "tests/graphs/test_offload.py", "tests/graphs/test_fuzz.py",
                              "tests/graphs/test_expression_forms.py",
                              "tests/graphs/test_budget_edges.py"],
    "nodes/net.py": ["tests/nodes/test_http.py", "tests/nodes/test_net.py",
                     "tests/nodes/test_net_replies.py", "tests/nodes/test_net_send.py"],
    "graphs/context.py": ["tests/nodes/test_http.py", "tests/nodes/test_idempotency.py",
                          "tests/graphs/test_flow.py", "tests/graphs/test_loops.py",
                          "tests/graphs/test_context.py"],
    "graphs/regions.py": ["tests/graphs/test_branches.py"],
    "graphs/compile.py": ["tests/graphs/test_branches.py", "tests/graphs/test_flow.py",
                          "tests/graphs/test_loops.py", "tests/graphs/test_compile.py",
                          "tests/graphs/test_steps.py"],
    "nodes/ai.py": ["tests/nodes/test_ai.py", "tests/nodes/test_request_digest.py"],
    "app/llm_cache.py": ["tests/nodes/test_ai.py", "tests/app/test_llm_cache.py"],
    "graphs/execute.py": ["tests/graphs/test_flow.py", "tests/nodes/test_http.py",
                          "tests/nodes/test_retry.py", "tests/graphs/test_retry_waits.py",
                          "tests/app/test_limits.py", "tests/graphs/test_node_failure.py",
                          "tests/graphs/test_attempt_events.py",
                          "tests/graphs/test_state_cap.py"],
    "graphs/redact.py": ["tests/graphs/test_redact.py", "tests/nodes/test_net.py"],
    "app/stores/sqlite.py": ["tests/app/test_store_contract.py",
                             "tests/app/test_store_contract_edges.py",
                             "tests/app/test_sqlite_store.py"],
    "app/stores/lease.py": ["tests/app/test_lease.py", "tests/app/test_fencing.py",
                            "tests/app/test_sqlite_saver.py", "tests/app/test_ownership.py",
                            "tests/app/test_mongo_fence.py"],
    "app/execution.py": ["tests/app/test_ownership.py", "tests/app/test_resume.py",
                         "tests/app/test_compile_once.py", "tests/app/test_shared_resources.py",
                         "tests/app/test_live_record.py", "tests/app/test_limits.py",
                         "tests/app/test_branch_lifecycle.py", "tests/app/test_drive.py",
                         "tests/app/test_execution_caches.py"],
    "app/lifecycle/claims.py": ["tests/app/test_ownership.py", "tests/app/test_recovery.py",
                                "tests/app/test_subflows.py", "tests/app/test_claims.py",
                                "tests/app/test_cancels.py"],
    "app/lifecycle/live.py": ["tests/app/test_live_record.py", "tests/app/test_live_writes.py",
                              "tests/app/test_live_watch.py", "tests/app/test_fencing.py"],
}


# Tests that run mutated code in a `python -m flowloom` subprocess: they pass on mutants,
# but fail mutmut's first, clean run, whose coverage bookkeeping exists in its own process only.
DESELECT = [
    "tests/nodes/test_ai.py::test_two_processes_make_one_model_call",
    "tests/app/test_ownership.py::test_the_cli_refuses_to_take_over_a_run_with_a_live_owner",
    "tests/app/test_ownership.py::"
    "test_a_stopped_owner_that_wakes_after_a_takeover_writes_nothing_more",
]


# What mutmut prints when the tests fail without mutations (then it tries no mutant).
CLEAN_RUN_FAILED = ("failed to collect stats", "Failed to run clean test",
                    "Failed to collect list of tests")


@dataclass
class Result:
    module: str
    tests: list[str]
    stats: dict[str, int] = field(default_factory=dict)
    survivors: list[tuple[str, str]] = field(default_factory=list)  # (name, diff)
    timeouts: list[str] = field(default_factory=list)
    error: str | None = None


def mutmut_section(module: str, tests: list[str]) -> str:
    return "\n".join([
        "[tool.mutmut]",
        f"source_paths = [{json.dumps('flowloom/' + module)}]",
        'also_copy = ["flowloom", "tests"]',
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        "pytest_add_cli_args = "
        + json.dumps([*(arg for test in DESELECT for arg in ("--deselect", test)),
                      # A mutant that makes a test wait for ever is killed in 3 minutes,
                      # not held until mutmut's own timeout (many times the whole set)
                      "--timeout=180"]),
        "",
    ])


def scratch_copy(module: str, tests: list[str]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="flowloom-mutation-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "flowloom", root / "flowloom", symlinks=False, ignore=ignore)
    shutil.copytree(REPO / "tests", root / "tests", ignore=ignore)
    pyproject = (REPO / "pyproject.toml").read_text()
    pyproject = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", pyproject)
    (root / "pyproject.toml").write_text(pyproject.rstrip() + "\n\n"
                                         + mutmut_section(module, tests))
    # On PYTHONPATH before mutmut fills it: a folder missing at start-up is cached as
    # absent by the import system, and `import tests` then fails in mutmut's own process.
    (root / "mutants").mkdir()
    return root


def mutmut(root: Path, *args: str, timeout: float | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(root / "mutants")}
    done = subprocess.run([str(MUTMUT), *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return done.stdout + done.stderr


def diff_of(root: Path, name: str) -> str:
    shown = mutmut(root, "show", name)
    return "\n".join(line for line in shown.splitlines()
                     if line[:1] in "+-" and line[:3] not in ("+++", "---"))


def run_module(module: str, max_children: int, timeout: float, keep: bool) -> Result:
    tests = [t for t in MODULES.get(module, []) if (REPO / t).exists()]
    result = Result(module, tests)
    if not tests:
        result.error = "no test files"
        return result
    root = scratch_copy(module, tests)
    try:
        # A second go when the clean run fails: a timing-sensitive test (test_offload's
        # thread counts) can fail once on a loaded machine; mutmut resumes where it was.
        for _ in range(2):
            output = mutmut(root, "run", "--max-children", str(max_children),
                            timeout=timeout)
            if not any(why in output for why in CLEAN_RUN_FAILED):
                break
        mutmut(root, "export-cicd-stats")
        stats_file = root / "mutants" / "mutmut-cicd-stats.json"
        if not stats_file.exists():
            result.error = output.strip().splitlines()[-1] if output.strip() else "no output"
            return result
        result.stats = json.loads(stats_file.read_text())
        if any(why in output for why in CLEAN_RUN_FAILED):  # nothing was tried
            result.error = "the tests fail without mutations: " + output.strip()[-300:]
        for line in mutmut(root, "results").splitlines():
            name, _, status = line.strip().partition(": ")
            if status == "survived":
                result.survivors.append((name, diff_of(root, name)))
            elif status == "timeout":
                result.timeouts.append(name)
    except subprocess.TimeoutExpired:
        result.error = f"mutmut run took longer than {timeout:g}s"
    finally:
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


def save(results: list[Result], path: Path) -> None:
    path.write_text(json.dumps([{"module": r.module, "tests": r.tests, "stats": r.stats,
                                 "survivors": r.survivors, "timeouts": r.timeouts,
                                 "error": r.error} for r in results], indent=1))


def print_results(results: list[Result]) -> None:
    header = ("module", "mutants", "killed", "survived", "timeout", "no tests")
    rows = [(r.module, *(str(r.stats.get(k, "-")) for k in ("total", "killed", "survived",
                                                                "timeout", "no_tests")))
            for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    for r in results:
        if r.error:
            print(f"\n{r.module}: not run: {r.error}")
        if r.survivors or r.timeouts:
            print(f"\n{r.module} ({', '.join(r.tests)}):")
        for name, diff in r.survivors:
            print(f"  survived {name}")
            for line in diff.splitlines():
                print(f"      {line.strip()}")
        for name in r.timeouts:
            print(f"  timeout  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", default=list(MODULES), choices=list(MODULES))
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600, help="per module, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    parser.add_argument("--json", type=Path, help="also write the results here, as each "
                        "module finishes")
    args = parser.parse_args()
    results = []
    for module in args.modules:
        print(f"mutating {module} ...", file=sys.stderr, flush=True)
        results.append(run_module(module, args.max_children, args.timeout, args.keep))
        if args.json:
            save(results, args.json)
    print_results(results)


if __name__ == "__main__":
    main()
