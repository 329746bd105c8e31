"""Flow semantics of workflow-format.md: entry points, joins, skips, routing, errors."""

from __future__ import annotations

import asyncio

import pytest

from flowloom.nodes.services import Services
from tests.conftest import Runner, chain, delay, t


async def test_entry_points_start_together(run: Runner) -> None:
    doc = {"nodes": [delay("a", 0.3), delay("b", 0.3), t("c", "x")], "edges": []}
    record = await run(doc)
    assert record.status == "succeeded"
    ab = [(e["event"], e["node_id"]) for e in run.events if e.get("node_id") in ("a", "b")]
    # both waits began before either ended: they ran at the same time
    assert sorted(ab[:2]) == [("node.started", "a"), ("node.started", "b")]
    assert sorted(ab[2:]) == [("node.succeeded", "a"), ("node.succeeded", "b")]
    assert record.output == {"a": None, "b": None, "c": "x"}


async def test_join_runs_once_after_branches_of_unequal_length(run: Runner) -> None:
    # langgraph#5979/#6166: separate edges into a join after unequal branches ran it twice
    nodes = [t("s", 1), t("a", 1), t("b1", 1), t("b2", 2), t("b3", 3),
             t("j", "{{ outputs.a + outputs.b3 }}")]
    edges = [*chain("s", "a", "j"), *chain("s", "b1", "b2", "b3", "j")]
    record = await run({"nodes": nodes, "edges": edges})
    assert run.order("node.started").count("j") == 1
    assert record.node_states["j"].output == 4
    started = run.order("node.started")
    assert started.index("j") > started.index("b3")


async def test_skipped_branch_never_blocks_a_join(run: Runner) -> None:
    # langgraph#3249: a list-edge barrier never fired when a condition skipped a branch
    nodes = [{"id": "c", "type": "condition", "config": {"expression": "inputs.go"}},
             t("yes", "Y"), t("no", "N"), t("no2", "N2"),
             t("j", "{{ outputs.yes or outputs.no2 }}")]
    edges = [{"source": "c", "target": "yes", "branch": "true"},
             {"source": "c", "target": "no", "branch": "false"},
             *chain("no", "no2", "j"), {"source": "yes", "target": "j"}]
    record = await run({"nodes": nodes, "edges": edges}, {"go": True})
    assert record.status == "succeeded"
    assert record.node_states["j"].output == "Y"
    assert record.node_states["no"].status == "skipped"
    assert record.node_states["no2"].status == "skipped"
    assert run.order("node.started").count("j") == 1


async def test_join_is_not_delayed_by_an_unrelated_branch(run: Runner) -> None:
    # defer=True ran a join only after an unrelated chain had finished
    nodes = [t("a", 1), t("b", 2), {"id": "j", "type": "join"},
             delay("u1", 0.2), delay("u2", 0.2), delay("u3", 0.2), delay("u4", 0.2)]
    edges = [*chain("a", "j"), *chain("b", "j"), *chain("u1", "u2", "u3", "u4")]
    record = await run({"nodes": nodes, "edges": edges})
    succeeded = run.order("node.succeeded")
    assert succeeded.index("j") < succeeded.index("u1")
    assert record.node_states["j"].output == {"a": 1, "b": 2}


async def test_join_any_fires_once_on_first_arrival(run: Runner) -> None:
    nodes = [t("fast", "F"), delay("slow", 0.3), {"id": "j", "type": "join",
                                                  "config": {"mode": "any"}}, t("after", "{{ j }}")]
    edges = [*chain("fast", "j", "after"), *chain("slow", "j")]
    record = await run({"nodes": nodes, "edges": edges})
    assert run.order("node.started").count("j") == 1
    assert record.node_states["j"].output == {"fast": "F"}
    succeeded = run.order("node.succeeded")
    assert succeeded.index("j") < succeeded.index("slow")
    assert run.order("node.started").count("after") == 1


async def test_all_branches_skipped_skips_the_join_and_downstream(run: Runner) -> None:
    nodes = [{"id": "c", "type": "condition", "config": {"expression": "false"}},
             t("x", 1), t("y", 2), t("z", 3), t("w", "w")]
    edges = [{"source": "c", "target": "x", "branch": "true"}, *chain("x", "y", "z"),
             {"source": "c", "target": "w", "branch": "false"}]
    record = await run({"nodes": nodes, "edges": edges})
    assert [record.node_states[n].status for n in "xyz"] == ["skipped"] * 3
    assert record.output == "w"


async def test_switch_routes_first_matching_case_else_default(run: Runner) -> None:
    def doc() -> dict:
        return {"nodes": [
            {"id": "s", "type": "switch", "config": {
                "expression": "inputs.color", "cases": {"warm": "red", "hot": "red",
                                                        "cold": "blue"}}},
            t("warm", "W"), t("hot", "H"), t("cold", "C"), t("other", "O")],
            "edges": [{"source": "s", "target": n, "branch": b} for n, b in
                      [("warm", "warm"), ("hot", "hot"), ("cold", "cold"),
                       ("other", "default")]]}
    red = await run(doc(), {"color": "red"})
    assert red.output == "W"
    assert red.node_states["hot"].status == "skipped"
    green = await run(doc(), {"color": "green"})
    assert green.output == "O"
    assert green.node_states["s"].output == "green"


async def test_error_edge_routes_failure_and_run_succeeds(run: Runner) -> None:
    nodes = [t("bad", "{{ inputs.missing.deeper }}"), t("ok", "fine"),
             t("handler", "handled: {{ outputs.bad.error.type }}")]
    edges = [*chain("bad", "ok"), {"source": "bad", "target": "handler", "branch": "error"}]
    record = await run({"nodes": nodes, "edges": edges})
    assert record.status == "succeeded"
    assert record.node_states["bad"].status == "failed"
    assert record.node_states["ok"].status == "skipped"
    assert record.output == "handled: ExpressionError"


async def test_on_error_continue_gives_error_output(run: Runner) -> None:
    nodes = [t("bad", "{{ 1 / 0 }}", on_error="continue"),
             t("next", "{{ outputs.bad.error.message }}")]
    record = await run({"nodes": nodes, "edges": chain("bad", "next")})
    assert record.status == "succeeded"
    assert record.node_states["bad"].status == "failed"
    assert record.node_states["bad"].output["error"]["type"] == "ExpressionError"
    assert record.output == "node `bad`, field `output`: ZeroDivisionError: division by zero"


async def test_on_error_fail_fails_run_marks_downstream_and_cancels_running(
        run: Runner) -> None:
    nodes = [t("bad", "{{ nope }}"), t("d1", 1), t("d2", 2), delay("slow", 5)]
    edges = chain("bad", "d1", "d2")

    async def never(seconds: float) -> None:  # `slow` ends only by being cancelled
        await asyncio.Event().wait()

    record = await asyncio.wait_for(run({"nodes": nodes, "edges": edges},
                                        services=Services(sleep=never)), 60)
    assert record.status == "failed"
    assert record.errors[0].node_id == "bad"
    assert record.errors[0].message == (
        "node `bad`, field `output`: unknown name or attribute: 'nope' is undefined")
    for node_id in ("d1", "d2"):
        assert record.node_states[node_id].status == "failed"
        assert record.node_states[node_id].error["message"] == "upstream node `bad` failed"
    assert record.node_states["slow"].status == "cancelled"
    assert record.finished_at is not None
    assert "node.succeeded" not in [e["event"] for e in run.events
                                    if e.get("node_id") == "slow"]


async def test_condition_routes_and_outputs_boolean(run: Runner) -> None:
    nodes = [{"id": "c", "type": "condition",
              "config": {"expression": "inputs.amount > 100 and inputs.vip"}},
             t("big", "big"), t("small", "small")]
    edges = [{"source": "c", "target": "big", "branch": "true"},
             {"source": "c", "target": "small", "branch": "false"}]
    record = await run({"nodes": nodes, "edges": edges}, {"amount": 150, "vip": True})
    assert record.node_states["c"].output is True
    assert record.output == "big"


async def test_filter_keeps_matching_items(run: Runner) -> None:
    nodes = [{"id": "f", "type": "filter", "config": {
        "items": "inputs.people", "condition": "item.age >= 18 and index < 3"}}]
    people = [{"age": 20}, {"age": 10}, {"age": 30}, {"age": 40}]
    record = await run({"nodes": nodes}, {"people": people})
    assert record.output == [{"age": 20}, {"age": 30}]


async def test_parallel_node_fans_out(run: Runner) -> None:
    nodes = [{"id": "p", "type": "parallel"}, delay("a", 0.3), delay("b", 0.3),
             {"id": "j", "type": "join"}]
    edges = [*chain("p", "a", "j"), *chain("p", "b", "j")]
    record = await run({"nodes": nodes, "edges": edges})
    assert record.status == "succeeded"
    assert peak_running(run.events) == 2  # a and b waited at the same time
    assert record.node_states["j"].output == {"a": None, "b": None}


@pytest.mark.parametrize(("doc", "expected"), [
    ({"nodes": [t("a", 1), {"id": "end", "type": "end", "config": {"output": "{{ a + 1 }}"}}],
      "edges": chain("a", "end")}, 2),
    ({"nodes": [t("a", 1), t("b", 2)], "edges": chain("a", "b")}, 2),
    ({"nodes": [t("a", 1), t("b", 2)], "edges": []}, {"a": 1, "b": 2}),
    ({"nodes": [t("a", 1), t("b", 2)], "edges": [], "output": "{{ [a, b] }}"}, [1, 2]),
    ({"nodes": [t("a", 1), {"id": "e", "type": "end"}], "edges": chain("a", "e")}, 1),
])
async def test_run_output_rule(run: Runner, doc: dict, expected: object) -> None:
    record = await run(doc)
    assert record.output == expected


async def test_a_failing_output_rule_names_the_workflow_s_output(run: Runner) -> None:
    record = await run({"nodes": [t("a", 1)], "output": "{{ a + nope }}"})
    assert record.status == "failed"
    [error] = record.errors
    assert error.node_id is None
    assert error.message == ("the workflow's `output`: unknown name or attribute: "
                             "'nope' is undefined")
    assert record.node_states["a"].status == "succeeded"


async def test_run_timeout_fails_run_and_cancels_nodes(run: Runner) -> None:
    doc = {"nodes": [delay("wait", 10)], "settings": {"timeout_s": 0.3}}
    record = await run(doc)
    assert record.status == "failed"
    assert record.errors[0].message == "run timed out after 0.3s (settings.timeout_s)"
    assert record.node_states["wait"].status == "cancelled"


async def test_node_timeout_fails_node_naming_it(run: Runner) -> None:
    doc = {"nodes": [delay("wait", 5, timeout_s=0.2,
                           retry={"max_attempts": 2, "initial_delay_s": 0.01})]}
    record = await run(doc)
    assert record.status == "failed"
    assert record.errors[0].node_id == "wait"
    assert record.errors[0].message == "node `wait`: timed out after 0.2s"
    assert record.node_states["wait"].attempts == 2
    assert [e["event"] for e in run.events if e.get("node_id") == "wait"].count(
        "node.retrying") == 1


def peak_running(events: list[dict]) -> int:
    running, peak = 0, 0
    for event in events:
        if event["event"] == "node.started":
            running += 1
            peak = max(peak, running)
        elif event["event"] in ("node.succeeded", "node.failed"):
            running -= 1
    return peak


async def test_max_concurrency_caps_parallel_nodes(run: Runner) -> None:
    nodes = [delay(f"d{i}", 0.1) for i in range(6)]
    record = await run({"nodes": nodes, "settings": {"max_concurrency": 2}})
    assert record.status == "succeeded"
    assert peak_running(run.events) == 2
