"""foreach and while: order, concurrency, empty lists, bounds, bodies and scope."""

from __future__ import annotations

from tests.conftest import Runner, chain, delay, t
from tests.graphs.test_flow import peak_running


def foreach(node_id: str, items: str, body: dict, **config: object) -> dict:
    return {"id": node_id, "type": "foreach", "config": {"items": items, "body": body, **config}}


async def test_foreach_keeps_item_order_whatever_finishes_first(run: Runner) -> None:
    body = {"nodes": [delay("wait", "{{ item.wait }}"), t("echo", "{{ item.name }}")],
            "edges": chain("wait", "echo")}
    items = [{"name": "a", "wait": 0.3}, {"name": "b", "wait": 0.0}, {"name": "c", "wait": 0.1}]
    record = await run({"nodes": [foreach("each", "inputs.items", body)]}, {"items": items})
    assert record.output == ["a", "b", "c"]
    finished = [e["node_id"] for e in run.events if e["event"] == "node.succeeded"
                and e["node_id"].endswith(".echo")]
    assert finished[0] == "each[1].echo"


async def test_foreach_honours_max_concurrency(run: Runner) -> None:
    body = {"nodes": [t("work", "{{ item }}")]}
    record = await run({"nodes": [foreach("each", "range(20) | list", {
        "nodes": [delay("nap", 0.02)]}, max_concurrency=3), foreach("other", "[1]", body)]})
    assert record.status == "succeeded"
    item_events = [e for e in run.events if str(e.get("node_id", "")).startswith("each[")]
    assert peak_running(item_events) == 3


async def test_empty_foreach_reaches_its_successors(run: Runner) -> None:
    body = {"nodes": [t("x", "{{ item }}")]}
    nodes = [foreach("each", "[]", body), t("after", "{{ outputs.each | length }}")]
    record = await run({"nodes": nodes, "edges": chain("each", "after")})
    assert record.node_states["each"].output == []
    assert record.output == 0


async def test_foreach_multi_node_body_runs_every_node_per_item(run: Runner) -> None:
    # a plain multi-node body ran its second node once, with the parent state
    body = {"nodes": [t("a", "{{ item * 10 }}"), t("b", "{{ a + index }}")],
            "edges": chain("a", "b")}
    record = await run({"nodes": [foreach("each", "[1, 2, 3]", body)]})
    assert record.output == [10, 21, 32]
    assert sum(1 for e in run.events if e["event"] == "node.succeeded"
               and e["node_id"].endswith(".b")) == 3


async def test_body_sees_outer_names_and_its_own_ids_shadow_them(run: Runner) -> None:
    body = {"nodes": [t("label", "{{ prefix }}-{{ item }}-{{ inputs.suffix }}")]}
    nodes = [t("prefix", "P"), t("label", "outer"),
             foreach("each", "['x', 'y']", {"nodes": [
                 t("label", "{{ outputs.prefix }}:{{ item }}:{{ inputs.suffix }}"),
                 t("again", "{{ label }}|{{ outputs.label }}")], "edges": chain("label", "again")}),
             foreach("one", "[1]", body)]
    edges = [*chain("prefix", "label", "each"), *chain("label", "one")]
    record = await run({"nodes": nodes, "edges": edges}, {"suffix": "S"})
    assert record.node_states["each"].output == ["P:x:S|P:x:S", "P:y:S|P:y:S"]
    assert record.node_states["one"].output == ["P-1-S"]


async def test_custom_item_var(run: Runner) -> None:
    body = {"nodes": [t("x", "{{ user.name }}#{{ index }}")]}
    record = await run({"nodes": [foreach("each", "inputs.users", body, item_var="user")]},
                       {"users": [{"name": "ada"}, {"name": "bob"}]})
    assert record.output == ["ada#0", "bob#1"]


async def test_failed_item_fails_foreach_unless_on_error_says_otherwise(run: Runner) -> None:
    body = {"nodes": [t("x", "{{ 10 / item }}")]}
    failed = await run({"nodes": [foreach("each", "[1, 0, 2]", body)]})
    assert failed.status == "failed"
    assert failed.errors[0].message == ("node `each`: item 1 failed: node `x`, field `output`: "
                                        "ZeroDivisionError: division by zero")
    assert failed.errors[0].node_id == "each"
    handled = await run({"nodes": [foreach("each", "[1, 0, 2]", body, ), t("next", "ok")],
                         "edges": [{"source": "each", "target": "next", "branch": "error"}]})
    assert handled.status == "succeeded"
    assert handled.node_states["each"].status == "failed"
    assert handled.output == "ok"
    per_item = {"nodes": [t("x", "{{ 10 / item }}", on_error="continue")]}
    kept = await run({"nodes": [foreach("each", "[1, 0, 2]", per_item)]})
    assert kept.output[0] == 10 and kept.output[2] == 5
    assert kept.output[1]["error"]["type"] == "ExpressionError"


async def test_foreach_items_must_be_a_list(run: Runner) -> None:
    record = await run({"nodes": [foreach("each", "'abc'", {"nodes": [t("x", 1)]})]})
    assert record.status == "failed"
    assert record.errors[0].message == (
        "node `each`, field `items`: `items` must be a list, got str")


async def test_while_checks_before_each_pass_and_exposes_loop(run: Runner) -> None:
    body = {"nodes": [t("step", "{{ (loop.last or 0) + inputs.inc }}")]}
    nodes = [{"id": "w", "type": "while", "config": {
        "condition": "(loop.last or 0) < 10", "body": body}}]
    record = await run({"nodes": nodes}, {"inc": 4})
    assert record.output == {"iterations": 3, "last": 12}
    zero = await run({"nodes": [{"id": "w", "type": "while", "config": {
        "condition": "false", "body": body}}]}, {"inc": 1})
    assert zero.output == {"iterations": 0, "last": None}


async def test_while_is_bounded_by_max_iterations(run: Runner) -> None:
    body = {"nodes": [t("n", "{{ loop.iteration }}")]}
    record = await run({"nodes": [{"id": "w", "type": "while", "config": {
        "condition": "true", "max_iterations": 5, "body": body}}]})
    assert record.status == "succeeded"
    assert record.output == {"iterations": 5, "last": 4}
    assert any("max_iterations=5" in log.message and log.level == "warning"
               for log in record.logs)


async def test_while_with_multi_node_body_and_failure(run: Runner) -> None:
    body = {"nodes": [t("a", "{{ loop.iteration }}"), t("b", "{{ 1 / (2 - a) }}")],
            "edges": chain("a", "b")}
    record = await run({"nodes": [{"id": "w", "type": "while", "config": {
        "condition": "true", "max_iterations": 5, "body": body}}]})
    assert record.status == "failed"
    assert record.errors[0].message == ("node `w`: pass 2 failed: node `b`, field `output`: "
                                        "ZeroDivisionError: division by zero")


async def test_nested_loops(run: Runner) -> None:
    inner = {"nodes": [t("cell", "{{ row }}{{ item }}")]}
    outer = {"nodes": [t("row", "{{ item }}"), foreach("cols", "['1', '2']", inner)],
             "edges": chain("row", "cols")}
    record = await run({"nodes": [foreach("rows", "['a', 'b']", outer)]})
    assert record.output == [["a1", "a2"], ["b1", "b2"]]


async def test_workflow_max_concurrency_also_caps_foreach_items(run: Runner) -> None:
    body = {"nodes": [delay("nap", 0.05)]}
    record = await run({"nodes": [foreach("each", "range(8) | list", body, max_concurrency=8)],
                        "settings": {"max_concurrency": 2}})
    assert record.status == "succeeded"
    item_events = [e for e in run.events if str(e.get("node_id", "")).startswith("each[")]
    assert peak_running(item_events) == 2


def started(run: Runner, node_id: str) -> list[dict]:
    return [{k: e.get(k) for k in ("node_id", "items_total")} for e in run.events
            if e["event"] == "node.started" and e["node_id"] == node_id]


async def test_a_foreach_announces_its_item_count_as_it_starts(run: Runner) -> None:
    inner = {"nodes": [foreach("pair", "range(item) | list", {"nodes": [t("x", 1)]})]}
    nodes = [foreach("each", "[2, 0, 3]", inner), foreach("none", "[]", {"nodes": [t("y", 1)]})]
    record = await run({"nodes": nodes})
    assert record.status == "succeeded"
    assert started(run, "each") == [{"node_id": "each", "items_total": 3}]
    assert started(run, "none") == [{"node_id": "none", "items_total": 0}]
    assert [started(run, f"each[{i}].pair") for i in range(3)] == [
        [{"node_id": f"each[{i}].pair", "items_total": n}] for i, n in enumerate([2, 0, 3])]
    # before any item of it starts
    kinds = [(e["event"], e["node_id"]) for e in run.events if "node_id" in e]
    assert kinds.index(("node.started", "each")) < kinds.index(("node.started", "each[0].pair"))
    assert record.node_states["each"].items_total == 3
    assert record.node_states["each[2].pair"].items_total == 3
    assert record.node_states["none"].items_total == 0


async def test_a_foreach_whose_items_fail_starts_without_a_count_and_fails(run: Runner) -> None:
    record = await run({"nodes": [foreach("each", "{'a': 1}", {"nodes": [t("x", 1)]})]})
    assert record.status == "failed"
    assert [(e["event"], e.get("items_total")) for e in run.events
            if e.get("node_id") == "each"] == [("node.started", None), ("node.failed", None)]
    assert record.node_states["each"].items_total is None
    assert record.node_states["each"].config == {"items": {"a": 1}}  # what it evaluated to


async def test_a_while_whose_one_node_body_fails_reports_one_attempt(run: Runner) -> None:
    # The body's node counts its own attempts; the loop was attempted once.
    body = {"nodes": [t("x", "{{ 1 // 0 }}")]}
    record = await run({"nodes": [{"id": "w", "type": "while", "config": {
        "condition": "true", "max_iterations": 2, "body": body}}]})
    assert record.status == "failed"
    assert record.node_states["w"].attempts == 1
    assert [(e["node_id"], e["attempt"]) for e in run.events
            if e["event"] == "node.failed"] == [("w[0].x", 1), ("w", 1)]
