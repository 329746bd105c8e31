"""Templates nested past what Jinja's recursive parser and code generator (and Python's
compiler) can take are validation problems, never a RecursionError: 70 brackets crashed
the validator and answered 500 before (issue 11)."""

from __future__ import annotations

import pytest

from flowloom import validate_workflow
from flowloom.graphs.nesting import MAX_LOOP_NESTING, MAX_NESTING, MAX_TREE_DEPTH
from tests.conftest import Runner


def nested(kind: str, n: int) -> str:
    return {
        "paren": "{{ " + "(" * n + "1" + ")" * n + " }}",
        "list": "{{ " + "[" * n + "1" + "]" * n + " }}",
        "dict": "{{ " + "{'a': " * n + "1" + "}" * n + " }}",
        "minus": "{{ " + "-" * n + "1 }}",
        "not": "{{ " + "not " * n + "1 }}",
        "if": "{% if 1 %}" * n + "x" + "{% endif %}" * n,
        "for": "{% for i in 'a' %}" * n + "x" + "{% endfor %}" * n,
        "set": "{% set x %}" * n + "x" + "{% endset %}" * n,
    }[kind]


def chained(kind: str, n: int) -> str:
    return {"plus": "{{ " + " + ".join(["1"] * n) + " }}",
            "filters": "{{ 1" + "|string" * n + " }}",
            "attributes": "{{ inputs" + ".a" * n + " }}"}[kind]


def doc(template: str) -> dict[str, object]:
    return {"nodes": [{"id": "a", "type": "transform", "config": {"output": template}}]}


KINDS = ["paren", "list", "dict", "minus", "not", "if", "set"]  # `for`: its own limit


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [MAX_NESTING, MAX_NESTING + 1, 100, 2000])
def test_nesting_past_the_limit_is_a_problem_at_the_template(kind: str, n: int) -> None:
    problems = [p for p in validate_workflow(doc(nested(kind, n)))
                if p.path == "$.nodes[0].config.output"]
    if n <= MAX_NESTING:
        assert problems == []
    else:
        [problem] = problems
        assert f"nested more than {MAX_NESTING} levels deep at line 1" in problem.message


@pytest.mark.parametrize("kind", ["plus", "filters", "attributes"])
def test_chains_past_the_tree_limit_are_a_problem(kind: str) -> None:
    [problem] = validate_workflow(doc(chained(kind, 200)))
    assert problem.path == "$.nodes[0].config.output"
    assert f"nested more than {MAX_TREE_DEPTH} levels deep" in problem.message
    assert validate_workflow(doc(chained(kind, 40))) == []


def test_the_limit_counts_levels_open_at_once_not_in_all() -> None:
    side_by_side = "{{ " + " + ".join(["((1))"] * 60) + " }}"
    assignments = "{% set x = [1] %}" * 200 + "{% if 1 %}{% set y %}z{% endset %}{% endif %}"
    assert validate_workflow(doc(side_by_side)) == []
    assert validate_workflow(doc(assignments)) == []


async def test_nesting_at_the_limit_runs(run: Runner) -> None:
    record = await run(doc("{{ " + "[" * MAX_NESTING + "7" + "]" * MAX_NESTING + " }}"))
    assert record.status == "succeeded"
    value = record.output
    for _ in range(MAX_NESTING):
        [value] = value
    assert value == 7


@pytest.mark.parametrize("kind", KINDS)
async def test_every_kind_at_the_limit_compiles_and_runs(run: Runner, kind: str) -> None:
    record = await run(doc(nested(kind, MAX_NESTING)))
    assert (record.status, record.errors) == ("succeeded", [])


async def test_loops_nest_within_what_python_compiles(run: Runner) -> None:
    # Jinja makes each `{% for %}` a Python loop, and Python compiles at most 20 nested
    # blocks (a SyntaxError at run time, before this limit).
    [problem] = validate_workflow(doc(nested("for", MAX_LOOP_NESTING + 1)))
    assert problem.path == "$.nodes[0].config.output"
    assert f"more than {MAX_LOOP_NESTING} `{{% for %}}` loops nested" in problem.message
    side_by_side = "{% for i in 'a' %}x{% endfor %}" * 40
    assert validate_workflow(doc(side_by_side)) == []
    record = await run(doc(nested("for", MAX_LOOP_NESTING)))
    assert (record.status, record.errors, record.output) == ("succeeded", [], "x")
