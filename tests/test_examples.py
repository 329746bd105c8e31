"""Every example in examples/ runs and gives the output its README promises."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Runner

EXAMPLES = REPO / "examples"

CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("hello.json", {"name": "Ada"}, {"greeting": "Hello, Ada!", "length": 3}),
    ("hello.json", {}, {"greeting": "Hello, world!", "length": 5}),
    ("branching.json", {"amount": 250}, "manual review of 250"),
    ("branching.json", {"amount": 20}, "auto-approved 20"),
    ("switch.json", {"priority": "p1"}, "page the on-call"),
    ("switch.json", {"priority": "p2"}, "add to the queue"),
    ("switch.json", {"priority": "p9"}, "look at it later"),
    ("parallel-join.json", {"first": "Grace", "last": "Hopper"},
     {"name": "Grace Hopper", "initials": "GH", "score": 50,
      "arrived": ["initials", "name", "score"]}),
    ("foreach.json", {"lines": [{"sku": "a", "qty": 2, "price": 3},
                                {"sku": "b", "qty": 1, "price": 12},
                                {"sku": "c", "qty": 5, "price": 4}]},
     {"lines": [{"sku": "a", "position": 0, "total": 6},
                {"sku": "b", "position": 1, "total": 12},
                {"sku": "c", "position": 2, "total": 20}],
      "expensive": ["b", "c"], "sum": 38}),
    ("while.json", {"seed": 3, "limit": 50}, {"iterations": 5, "last": 96}),
    ("error-edge.json", {"payload": {"amount": 4}}, "amount 4"),
    ("error-edge.json", {"payload": {}}, "could not parse: ExpressionError"),
]


@pytest.mark.parametrize(("name", "inputs", "expected"), CASES)
async def test_example_runs(run: Runner, name: str, inputs: dict[str, Any],
                            expected: Any) -> None:
    record = await run(EXAMPLES / name, inputs)
    assert record.status == "succeeded", record.errors
    assert record.output == expected


def test_every_example_is_covered() -> None:
    covered = {name for name, _, _ in CASES}
    on_disk = {p.name for p in Path(EXAMPLES).glob("*.json")}
    assert on_disk - covered <= EXAMPLES_COVERED_ELSEWHERE


# run with the local servers in tests/nodes/test_examples_io.py
EXAMPLES_COVERED_ELSEWHERE: set[str] = {"ai-triage.json", "http-retries.json"}


def _readme_dialects() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("### Documents written for other engines")
    return readme[start:readme.index("\n### ", start + 1)]


def test_the_readme_shows_the_dialect_files_as_they_are() -> None:
    section = _readme_dialects()
    shown = re.findall(r"\(`(examples/dialects/[\w-]+\.json)`\):\n\n```json\n(.*?)```",
                       section, re.S)
    assert sorted(name for name, _ in shown) == sorted(
        f"examples/dialects/{p.name}" for p in (EXAMPLES / "dialects").glob("*.json"))
    for name, text in shown:
        assert json.loads(text) == json.loads((REPO / name).read_text()), name
    run = [shlex.split(line)[2] for line in section.splitlines()
           if line.startswith("flowloom run ")]
    assert sorted(run) == sorted(name for name, _ in shown)  # each one is run, below


@pytest.mark.parametrize("line", [
    line for line in _readme_dialects().splitlines() if line.startswith("flowloom run ")])
def test_the_readme_dialect_commands_give_the_outputs_it_shows(line: str,
                                                               tmp_path: Path) -> None:
    command, _, shown = line.partition("# output: ")
    args = shlex.split(command)[1:]
    done = subprocess.run([sys.executable, "-m", "flowloom", *args, "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env={
                              **os.environ,
                              "FLOWLOOM_STORE": f"sqlite:///{tmp_path / 'readme.db'}"})
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "succeeded"
    assert record["output"] == json.loads(shown)
