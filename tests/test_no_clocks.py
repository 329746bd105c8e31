"""No test compares a wall-clock duration with a limit: such tests fail on a busy machine
and pass on a broken one. Assert event order, counts or injected clocks instead; poll
with a generous deadline when something has to happen. A justified exception carries
`# clock-ok: <why>` on the comparison's line or the line above."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MARKER = "# clock-ok:"
CLOCKS = {"monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "time", "time_ns"}


def is_loop(node: ast.AST) -> bool:
    """`loop` or `asyncio.get_running_loop()`: an event loop, whose `time()` is a clock."""
    if isinstance(node, ast.Name):
        return node.id.endswith("loop")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name) and (
        getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "get_running_loop", "get_event_loop"))


def is_clock_call(node: ast.AST) -> bool:
    """`time.monotonic()`, `perf_counter()`, `time.time()`, `loop.time()` and the like."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute):
        if func.attr == "time" and is_loop(func.value):
            return True
        return func.attr in CLOCKS and isinstance(func.value, ast.Name) and (
            func.value.id == "time")
    return isinstance(func, ast.Name) and func.id in CLOCKS - {"time"}


def is_timestamp(node: ast.AST) -> bool:
    """`event["at"]`, `record.finished_at`: a clock reading stored in an event or record."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        key = node.slice.value
        return isinstance(key, str) and (key == "at" or key.endswith("_at"))
    return isinstance(node, ast.Attribute) and (node.attr == "at" or node.attr.endswith("_at"))


def clock_durations(source: str) -> list[int]:
    """Line numbers of comparisons with a side computed from a difference of clocks."""
    tree = ast.parse(source)
    lines = source.splitlines()
    readings: set[str] = set()  # names bound to a clock reading
    durations: set[str] = set()  # names bound to a difference involving one

    def reads_clock(node: ast.AST) -> bool:
        return is_clock_call(node) or is_timestamp(node) or (
            isinstance(node, ast.Name) and node.id in readings)

    def is_duration(node: ast.AST) -> bool:
        for sub in ast.walk(node):
            if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Sub) and (
                    reads_clock(sub.left) or reads_clock(sub.right)):
                return True
            if isinstance(sub, ast.Name) and sub.id in durations:
                return True
        return False

    for node in ast.walk(tree):  # bindings first, wherever they are
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if is_clock_call(node.value) or is_timestamp(node.value):
                readings.update(names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if is_duration(node.value):
                durations.update(t.id for t in targets if isinstance(t, ast.Name))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
                is_duration(side) for side in [node.left, *node.comparators]):
            span = lines[max(node.lineno - 2, 0):(node.end_lineno or node.lineno)]
            if not any(MARKER in line for line in span):
                found.append(node.lineno)
    return sorted(found)


@pytest.mark.parametrize(("source", "lines"), [
    ("start = time.monotonic()\nrun()\nassert time.monotonic() - start < 2\n", [3]),
    ("t0 = perf_counter()\nelapsed = perf_counter() - t0\nassert elapsed < 0.5\n", [3]),
    ("a = time.time()\nb = time.time()\nassert abs(a - b) < 0.2\n", [3]),
    ("asked = loop.time()\ncancel()\nassert loop.time() - asked < 2\n", [3]),
    ("t = asyncio.get_running_loop().time()\nassert 1 > t - 5\n", [2]),
    ("assert time.monotonic() - start < 2  # clock-ok: measures the guard itself\n", []),
    ("# clock-ok: the bound is the behaviour\nassert time.monotonic() - start < 2\n", []),
    ("deadline = time.monotonic() + 30\nwhile time.monotonic() < deadline:\n    pass\n", []),
    ("assert events.index('a') < events.index('b')\n", []),
    ("assert second['at'] - first['at'] >= 2\n", [1]),
    ("took = (record.finished_at - record.started_at).total_seconds()\nassert took < 4\n", [2]),
    ("starts = {e['node_id']: e['at'] for e in events}\nassert starts['a'] < starts['b']\n", []),
])
def test_the_lint_itself(source: str, lines: list[int]) -> None:
    assert clock_durations(source) == lines


def test_no_test_compares_a_clock_duration_with_a_limit() -> None:
    offenders = [f"{path.relative_to(TESTS.parent)}:{line}"
                 for path in sorted(TESTS.rglob("*.py"))
                 for line in clock_durations(path.read_text())]
    assert offenders == []
