"""Join readiness: a join runs exactly once iff an incoming branch was taken, whatever
order its branches settle in."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowloom.app.workflows import compile_workflow
from flowloom.graphs.errors import CompileError
from flowloom.graphs.plan import plan_nodes, readiness
from flowloom.graphs.spec import WorkflowSpec
from flowloom.nodes.registry import NODE_TYPES
from tests.conftest import Runner, chain, t

PORTS = ("", "true", "false")


@st.composite
def joins(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], dict[str, list[str]],
                                    list[str]]:
    """A join's mode, its in-edges (source, port), the ports each source fires when it
    settles (none: skipped or failed without an error edge), and the settle order."""
    mode = draw(st.sampled_from(["all", "any"]))
    edges = draw(st.lists(st.tuples(st.sampled_from(["s0", "s1", "s2", "s3"]),
                                    st.sampled_from(PORTS)),
                          min_size=1, max_size=6, unique=True))
    sources = list(dict.fromkeys(source for source, _ in edges))
    fired = {s: sorted(draw(st.sets(st.sampled_from(PORTS)))) for s in sources}
    order = draw(st.permutations(sources))
    return mode, edges, fired, order


def join_plan(mode: str, edges: list[tuple[str, str]]) -> Any:
    sources = list(dict.fromkeys(source for source, _ in edges))
    spec = WorkflowSpec.model_validate({
        "nodes": [*(t(s, 1) for s in sources), {"id": "j", "type": "join",
                                                 "config": {"mode": mode}}],
        "edges": [{"source": s, "target": "j", "branch": port or None} for s, port in edges],
    })
    return plan_nodes(spec, NODE_TYPES)["j"]


@given(joins())
def test_a_join_runs_once_iff_a_branch_was_taken_and_never_early(
        case: tuple[str, list[tuple[str, str]], dict[str, list[str]], list[str]]) -> None:
    mode, edges, fired, order = case
    plan = join_plan(mode, edges)
    taken_sources = [s for s in dict.fromkeys(s for s, _ in edges)
                     if any(src == s and port in fired[s] for src, port in edges)]
    metas: dict[str, Any] = {}
    decisions = []
    for step, source in enumerate(order):
        metas[source] = {"status": "succeeded" if fired[source] else "skipped",
                         "ports": fired[source]}
        verdict, taken = readiness(plan, metas)
        if verdict != "wait":
            decisions.append((verdict, step, taken))
            break  # the scheduler runs or skips a node once
    assert len(decisions) == 1, "every branch settled and the join still waits"
    verdict, step, taken = decisions[0]
    if not taken_sources:
        assert (verdict, step, taken) == ("skip", len(order) - 1, [])
    elif mode == "any":
        first = min(order.index(s) for s in taken_sources)
        assert (verdict, step, taken) == ("run", first, [
            src for src, port in edges if src == order[first] and port in fired[src]])
    else:
        settled = order[:step + 1]
        assert verdict == "run"
        assert set(taken_sources) <= set(settled)  # only after all taken ones settled
        assert step == len(order) - 1
        assert taken == [src for src, port in edges if port in fired[src]]


def test_readiness_waits_for_a_live_branch_after_an_untaken_one_settled() -> None:
    plan = join_plan("all", [("a", ""), ("c", "false")])
    metas: dict[str, Any] = {"c": {"status": "succeeded", "ports": ["", "true"]}}
    assert readiness(plan, metas) == ("wait", [])
    metas["a"] = {"status": "succeeded", "ports": [""]}
    assert readiness(plan, metas) == ("run", ["a"])


@pytest.mark.parametrize(("go", "started", "output"), [
    (True, ["c", "yes", "j"], {"yes": "Y"}),  # the untaken branch settles last
    (False, ["c", "no", "no2", "j"], {"no2": "N2"}),  # the untaken branch settles first
])
async def test_join_after_a_condition_runs_once_in_either_branch_order(
        run: Runner, go: bool, started: list[str], output: dict[str, str]) -> None:
    nodes = [{"id": "c", "type": "condition", "config": {"expression": "inputs.go"}},
             t("yes", "Y"), t("no", "N"), t("no2", "N2"), {"id": "j", "type": "join"}]
    edges = [{"source": "c", "target": "yes", "branch": "true"},
             {"source": "c", "target": "no", "branch": "false"},
             *chain("no", "no2", "j"), {"source": "yes", "target": "j"}]
    record = await run({"nodes": nodes, "edges": edges}, {"go": go})
    assert record.status == "succeeded"
    assert run.order("node.started") == started
    assert record.node_states["j"].status == "succeeded"
    assert record.node_states["j"].output == output
    assert record.output == output


@pytest.mark.parametrize("body", [
    {"nodes": [{"id": "b", "type": "nope"}]},
    {"nodes": [t("c", 1), {"id": "b", "type": "nope"}], "edges": chain("c", "b")},
])
def test_an_unknown_type_in_a_hand_built_loop_body_is_a_compile_error(
        body: dict[str, Any]) -> None:
    spec = WorkflowSpec.model_validate({"nodes": [
        {"id": "each", "type": "foreach", "config": {"items": "inputs.xs", "body": body}}]})
    with pytest.raises(CompileError) as refused:
        compile_workflow(spec)
    assert str(refused.value) == ("unknown node type `nope` (node `b`); validate the document "
                                  "with load_workflow() first")
