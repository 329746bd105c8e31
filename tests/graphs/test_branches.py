"""Branches that never wait for each other: a pause, a delay or a slow node in one branch
holds up no node of another. Asserted by the order of events, never by the clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flowloom.app.runner import resume_workflow
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.graphs.context import NodeContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeType
from flowloom.graphs.regions import Branch, Race, find_branches
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from tests.conftest import Runner, chain, delay, t


def approval(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "approval", "config": {"prompt": f"{node_id}?"}}


def finished_before(events: list[dict[str, Any]], first: str, then: str) -> bool:
    """`first` succeeded before `then` started (or ended) in the event log."""
    kinds = [(e["event"], e["node_id"]) for e in events if "node_id" in e]
    done = kinds.index(("node.succeeded", first))
    later = [i for i, k in enumerate(kinds) if k[1] == then]
    return bool(later) and done < later[0]


# The decomposition itself


def test_a_fork_splits_into_its_branches() -> None:
    edges = [*chain("s", "a1", "a2", "j"), *chain("s", "b1", "j"), ("j", "end")]
    edges = [(e["source"], e["target"]) if isinstance(e, dict) else e for e in edges]
    nodes = ["s", "a1", "a2", "b1", "j", "end"]
    # b1 alone is one task either way; a1 -> a2 gets its own subgraph.
    assert find_branches(nodes, edges) == [Branch("a1.branch", ("a1", "a2"))]
    assert find_branches(nodes, edges, must_split=lambda n: n == "b1") == [
        Branch("a1.branch", ("a1", "a2")), Branch("b1.branch", ("b1",))]


def test_entry_points_are_branches_of_the_start() -> None:
    edges = [("a1", "a2"), ("b1", "b2")]
    assert find_branches(["a1", "a2", "b1", "b2"], edges) == [
        Branch("a1.branch", ("a1", "a2")), Branch("b1.branch", ("b1", "b2"))]


def test_branches_nest() -> None:
    edges = [("s", "x"), ("x", "p"), ("x", "q"), ("p", "y"), ("q", "y"), ("s", "z1"),
             ("z1", "z2")]
    # At the top: {x, p, q, y} and {z1, z2}; {p} and {q} are split again inside.
    assert find_branches(["s", "x", "p", "q", "y", "z1", "z2"], edges) == [
        Branch("x.branch", ("x", "p", "q", "y")), Branch("z1.branch", ("z1", "z2"))]
    assert find_branches(["x", "p", "q", "y"], edges) == []  # single nodes stay in place


def test_forks_after_a_race_are_split_inside_its_join_side() -> None:
    # The first fork meets at a join that fires early (a race: the rest is the join's
    # side), inside which the first fork only computes (kept shared), the second has one
    # part (nothing to split); the last splits.
    edges = [("s", "a1"), ("a1", "a2"), ("s", "b1"), ("b1", "b2"), ("a2", "j"), ("b2", "j"),
             ("j", "c1"), ("j", "d1"), ("c1", "k"), ("d1", "k"),
             ("k", "m"), ("m", "n"), ("k", "n"),
             ("n", "x1"), ("x1", "x2"), ("n", "y1"), ("y1", "y2")]
    nodes = ["s", "a1", "a2", "b1", "b2", "j", "c1", "d1", "k", "m", "n", "x1", "x2", "y1",
             "y2"]
    branches = find_branches(nodes, edges, fires_early=lambda node: node == "j",
                             holds=lambda node: node not in ("c1", "d1"))
    tail = ("j", "c1", "d1", "k", "m", "n", "x1", "x2", "y1", "y2")
    assert branches == [Race("j.race", "j", (("a1", "a2"), ("b1", "b2")), tail)]
    inside = find_branches(tail, edges, fires_early=lambda node: node == "j",
                           holds=lambda node: node not in ("c1", "d1"))
    assert inside == [Branch("x1.branch", ("x1", "x2")), Branch("y1.branch", ("y1", "y2"))]


def test_a_fork_after_a_crossing_region_is_still_split() -> None:
    # s's region is entered from `e` too (a second entry point), so s stays shared; the
    # fork at j after it splits.
    edges = [("s", "a1"), ("a1", "a2"), ("s", "b1"), ("b1", "b2"), ("e", "b2"),
             ("a2", "j"), ("b2", "j"), ("j", "x1"), ("x1", "x2"), ("j", "y1"), ("y1", "y2")]
    nodes = ["s", "e", "a1", "a2", "b1", "b2", "j", "x1", "x2", "y1", "y2"]
    assert find_branches(nodes, edges) == [Branch("x1.branch", ("x1", "x2")),
                                           Branch("y1.branch", ("y1", "y2"))]


def test_a_fork_inside_a_branch_is_split_only_inside_it() -> None:
    edges = [("s", "x"), ("x", "p1"), ("p1", "p2"), ("x", "q1"), ("q1", "q2"),
             ("p2", "y"), ("q2", "y"), ("s", "z1"), ("z1", "z2")]
    nodes = ["s", "x", "p1", "p2", "q1", "q2", "y", "z1", "z2"]
    assert find_branches(nodes, edges) == [
        Branch("x.branch", ("x", "p1", "p2", "q1", "q2", "y")),
        Branch("z1.branch", ("z1", "z2"))]
    inner = ["x", "p1", "p2", "q1", "q2", "y"]
    assert find_branches(inner, edges) == [Branch("p1.branch", ("p1", "p2")),
                                           Branch("q1.branch", ("q1", "q2"))]


def test_a_crossing_edge_keeps_a_region_together() -> None:
    # b2 is fed by both branches: the fork at s is not split; the shared region advances
    # in lockstep (docs/semantics.md).
    edges = [("s", "a1"), ("a1", "a2"), ("s", "b1"), ("b1", "b2"), ("a1", "b2"),
             ("a2", "j"), ("b2", "j")]
    assert find_branches(["s", "a1", "a2", "b1", "b2", "j"], edges) == []


def test_a_join_that_fires_on_first_arrival_races_its_branches() -> None:
    edges = [("s", "a1"), ("a1", "a2"), ("s", "b1"), ("b1", "b2"), ("a2", "j"), ("b2", "j"),
             ("j", "after")]
    nodes = ["s", "a1", "a2", "b1", "b2", "j", "after"]
    assert len(find_branches(nodes, edges)) == 2
    assert find_branches(nodes, edges, fires_early=lambda n: n == "j") == [
        Race("j.race", "j", (("a1", "a2"), ("b1", "b2")), ("j", "after"))]
    # A branch of one node races too, and so does an edge straight from the fork.
    edges = [("s", "a1"), ("s", "j"), ("a1", "j")]
    assert find_branches(["s", "a1", "j"], edges, fires_early=lambda n: n == "j") == [
        Race("j.race", "j", (("a1",),), ("j",))]


def test_a_race_keeps_document_order_and_forks_after_it_are_still_split() -> None:
    # `s` stays shared (its region is entered from `x` too); the race at `f` comes first
    # in topological order, and the fork at `g` beside it still splits.
    edges = [("s", "f"), ("s", "g"), ("x", "g"), ("f", "z1"), ("z1", "a2"), ("a2", "j"),
             ("f", "b1"), ("b1", "j"), ("g", "c1"), ("c1", "c2"), ("c2", "e"), ("g", "d1"),
             ("d1", "d2"), ("d2", "e")]
    nodes = ["s", "x", "f", "z1", "a2", "b1", "j", "g", "c1", "c2", "d1", "d2", "e"]
    assert find_branches(nodes, edges, fires_early=lambda n: n == "j") == [
        Race("j.race", "j", (("z1", "a2"), ("b1",)), ("j",)),
        Branch("c1.branch", ("c1", "c2")), Branch("d1.branch", ("d1", "d2"))]


def test_a_fork_after_an_early_join_still_races_on_its_own_edge() -> None:
    # Inside the side of the race at `k`: `f` follows a join that fired early, so nothing
    # before `f` counts as settled, but `f` itself has: its edge straight to `j` is known.
    edges = [("k", "f"), ("f", "a"), ("f", "j"), ("a", "j")]
    assert find_branches(["k", "f", "a", "j"], edges, fires_early=lambda n: n in "kj") == [
        Race("j.race", "j", (("a",),), ("j",))]


def test_a_race_needs_its_join_side_to_wait_for_nothing_outside() -> None:
    # `late` runs beside the fork in the same graph (s's own region is entered from `e`,
    # so s stays shared) and feeds a node after the join: the join's side could not see
    # it arrive from inside one task, so the fork stays shared.
    edges = [("s", "f"), ("e", "late"), ("s", "late"), ("f", "a"), ("f", "b"), ("a", "j"),
             ("b", "j"), ("j", "after"), ("late", "after")]
    nodes = ["s", "e", "f", "late", "a", "b", "j", "after"]
    assert find_branches(nodes, edges, fires_early=lambda n: n == "j") == []
    # What ran before the fork has settled: an edge from it to the join's side is fine.
    edges = [("s", "f"), ("f", "a"), ("f", "b"), ("a", "j"), ("b", "j"), ("j", "after"),
             ("s", "after")]
    assert find_branches(["s", "f", "a", "b", "j", "after"], edges,
                         fires_early=lambda n: n == "j") == [
        Race("j.race", "j", (("a",), ("b",)), ("j", "after"))]
    # Unless a join on the way there fired early itself: then it may still be running.
    edges = [("s", "g"), ("s", "h"), ("g", "k"), ("h", "k"), ("k", "f"), ("f", "a"),
             ("f", "b"), ("a", "j"), ("b", "j"), ("j", "after"), ("h", "after")]
    races = find_branches(["s", "g", "h", "k", "f", "a", "b", "j", "after"], edges,
                          fires_early=lambda n: n in ("k", "j"))
    assert [r.name for r in races] == []


# Runs


async def test_a_chain_finishes_while_an_approval_beside_it_waits(run: Runner) -> None:
    doc = {"nodes": [t("start", 1), approval("ask"), t("a1", 1), t("a2", 2), t("a3", 3)],
           "edges": [*chain("start", "ask"), *chain("start", "a1", "a2", "a3")]}
    record = await run(doc, execution_id="beside")
    assert record.status == "waiting"
    assert [w["node_id"] for w in record.waiting_for] == ["ask"]
    assert {n: record.node_states[n].status for n in ("a1", "a2", "a3")} == {
        "a1": "succeeded", "a2": "succeeded", "a3": "succeeded"}


async def test_two_approvals_in_two_branches_are_answered_in_either_order(
        run: Runner, store: SqliteStore) -> None:
    doc = {"nodes": [t("start", 1), approval("legal"), t("after_legal", "L"),
                     approval("finance"), t("after_finance", "F")],
           "edges": [*chain("start", "legal", "after_legal"),
                     *chain("start", "finance", "after_finance")]}
    for first, second in (("legal", "finance"), ("finance", "legal")):
        execution_id = f"two-{first}"
        waiting = await run(doc, execution_id=execution_id)
        assert sorted(w["node_id"] for w in waiting.waiting_for) == ["finance", "legal"]
        events: list[dict[str, Any]] = []
        half = await resume_workflow(execution_id, {"approved": True}, node_id=first,
                                     store=store, on_event=events.append)
        assert half.status == "waiting"
        assert [w["node_id"] for w in half.waiting_for] == [second]
        assert half.node_states[f"after_{first}"].status == "succeeded"
        assert f"after_{second}" not in half.node_states
        done = await resume_workflow(execution_id, {"approved": False}, node_id=second,
                                     store=store, on_event=events.append)
        assert done.status == "succeeded"
        assert done.node_states[first].output == {"approved": True}
        assert done.node_states[second].output == {"approved": False}
        # Nothing finished ran again: each node succeeded once over both resumes (the
        # approval still open after the first answer asked again, and only that).
        succeeded = [e["node_id"] for e in events if e["event"] == "node.succeeded"]
        assert sorted(succeeded) == sorted([first, f"after_{first}", second,
                                            f"after_{second}"])
        waits = [e["node_id"] for e in events if e["event"] == "node.waiting"]
        assert waits == [second]


async def test_a_join_fires_while_a_delay_beside_it_still_waits(run: Runner) -> None:
    doc = {"nodes": [t("start", 1), {"id": "par", "type": "parallel"}, t("p1", 1), t("p2", 2),
                     {"id": "join", "type": "join"}, t("after", "{{ outputs.join }}"),
                     delay("slow", 0.5), t("slow_done", "S")],
           "edges": [*chain("start", "par", "p1", "join", "after"), *chain("par", "p2", "join"),
                     *chain("start", "slow", "slow_done")]}
    record = await run(doc)
    assert record.status == "succeeded"
    assert record.node_states["after"].output == {"p1": 1, "p2": 2}
    assert finished_before(run.events, "after", "slow_done")
    assert finished_before(run.events, "join", "slow_done")
    started = run.order("node.started")
    assert started.count("join") == 1 and started.count("after") == 1


def join_any(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "join", "config": {"mode": "any"}}


async def test_join_any_and_what_follows_it_finish_before_the_slow_branch(
        run: Runner) -> None:
    doc = {"nodes": [t("start", 1), t("quick", "Q"), delay("slow", 0.5), t("slow_done", "S"),
                     join_any("first"), t("after", "{{ outputs.first }}"), t("after2", 2)],
           "edges": [*chain("start", "quick", "first", "after", "after2"),
                     *chain("start", "slow", "slow_done", "first")]}
    record = await run(doc)
    assert record.status == "succeeded"
    assert record.node_states["after"].output == {"quick": "Q"}
    assert finished_before(run.events, "after2", "slow_done")
    assert record.node_states["slow_done"].output == "S"  # still recorded
    started = run.order("node.started")
    assert started.count("first") == 1 and started.count("after2") == 1
    succeeded = run.order("node.succeeded")
    assert succeeded.index("after2") < succeeded.index("slow") < succeeded.index("slow_done")


async def test_join_any_goes_on_while_an_approval_in_another_branch_waits(
        run: Runner, store: SqliteStore) -> None:
    doc = {"nodes": [t("start", 1), approval("ask"), t("answered", "A"), t("quick", "Q"),
                     join_any("first"), t("after", "done")],
           "edges": [*chain("start", "ask", "answered", "first"),
                     *chain("start", "quick", "first", "after")]}
    waiting = await run(doc, execution_id="race-wait")
    assert waiting.status == "waiting"
    assert [w["node_id"] for w in waiting.waiting_for] == ["ask"]
    assert waiting.node_states["after"].output == "done"
    events: list[dict[str, Any]] = []
    done = await resume_workflow("race-wait", {"approved": True}, node_id="ask",
                                 store=store, on_event=events.append)
    assert done.status == "succeeded"
    assert done.node_states["answered"].output == "A"
    # Only the answered branch went on: the join's side did not run again.
    assert [e["node_id"] for e in events if e["event"] == "node.started"] == [
        "ask", "answered"]


async def test_a_failure_after_join_any_stops_the_slow_branch(run: Runner) -> None:
    bad = {"id": "bad", "type": "transform", "config": {"output": "{{ 1 // 0 }}"}}
    doc = {"nodes": [t("start", 1), t("quick", "Q"), delay("slow", 30), join_any("first"),
                     bad],
           "edges": [*chain("start", "quick", "first", "bad"), *chain("start", "slow", "first")]}
    record = await run(doc)
    assert record.status == "failed"
    assert record.errors[0].node_id == "bad"
    assert record.node_states["slow"].status in ("cancelled", "failed")


async def test_join_any_with_every_branch_skipped_is_skipped(run: Runner) -> None:
    doc = {"nodes": [{"id": "c", "type": "condition", "config": {"expression": "false"}},
                     delay("a", 0.01), delay("b", 0.01), join_any("first"), t("after", 1)],
           "edges": [{"source": "c", "target": "a", "branch": "true"},
                     {"source": "c", "target": "b", "branch": "true"},
                     *chain("a", "first", "after"), *chain("b", "first")]}
    record = await run(doc)
    assert record.status == "succeeded"
    assert {n: record.node_states[n].status for n in ("a", "b", "first", "after")} == {
        "a": "skipped", "b": "skipped", "first": "skipped", "after": "skipped"}


class FailsOnce(NodeType):
    """Fails its first attempt with a retriable error."""

    name = "test_fails_once"

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        if ctx.attempt == 1:
            raise NodeError("try again", retriable=True)
        return ctx.attempt


@pytest.fixture
def fails_once() -> Iterator[None]:
    register_node_type(FailsOnce())
    yield
    NODE_TYPES.pop(FailsOnce.name)


async def test_a_retry_backoff_holds_no_other_branch(run: Runner, fails_once: None) -> None:
    flaky = {"id": "flaky", "type": "test_fails_once",
             "retry": {"max_attempts": 2, "initial_delay_s": 0.3, "jitter": False}}
    doc = {"nodes": [t("start", 1), flaky, t("c1", 1), t("c2", 2), t("c3", 3)],
           "edges": [*chain("start", "flaky"), *chain("start", "c1", "c2", "c3")]}
    record = await run(doc)
    assert record.node_states["flaky"].output == 2
    kinds = [(e["event"], e["node_id"]) for e in run.events if "node_id" in e]
    # The whole chain ran during the backoff between the two attempts.
    retried = kinds.index(("node.retrying", "flaky"))
    assert retried < kinds.index(("node.succeeded", "c3")) < kinds.index(
        ("node.succeeded", "flaky"))


async def test_a_failure_stops_every_branch_at_once(run: Runner) -> None:
    bad = {"id": "bad", "type": "transform", "config": {"output": "{{ 1 // 0 }}"}}
    doc = {"nodes": [t("start", 1), t("a1", 1), bad, delay("slow", 30), t("slow_done", "S")],
           "edges": [*chain("start", "a1", "bad"), *chain("start", "slow", "slow_done")]}
    record = await run(doc)
    assert record.status == "failed"
    assert record.errors[0].node_id == "bad"
    # The 30 s delay was cut short: it never succeeded, and what follows it never ran.
    assert record.node_states["slow"].status in ("cancelled", "failed")
    assert [e["node_id"] for e in run.events if e["event"] == "node.started"
            and e["node_id"] == "slow_done"] == []


async def test_nested_fan_outs_run_and_join_once(run: Runner) -> None:
    body = {"nodes": [{"id": "par", "type": "parallel"}, t("x", "{{ item * 10 }}"),
                      t("y", "{{ item + 1 }}"), {"id": "j", "type": "join"},
                      t("sum", "{{ outputs.x + outputs.y }}")],
            "edges": [*chain("par", "x", "j", "sum"), *chain("par", "y", "j")]}
    doc = {"nodes": [t("start", 1), {"id": "outer", "type": "parallel"},
                     {"id": "each", "type": "foreach", "config": {"items": "[1, 2, 3]",
                                                                  "body": body}},
                     t("other", "O"), t("other2", "{{ outputs.other }}!"),
                     {"id": "end", "type": "join"}],
           "edges": [*chain("start", "outer", "each", "end"),
                     *chain("outer", "other", "other2", "end")]}
    record = await run(doc)
    assert record.status == "succeeded"
    assert record.node_states["each"].output == [12, 23, 34]
    assert record.node_states["end"].output == {"each": [12, 23, 34], "other2": "O!"}
    assert run.order("node.started").count("end") == 1


async def test_a_region_with_a_crossing_edge_still_runs_right(run: Runner) -> None:
    nodes = [t("s", 1), t("a1", 2), t("a2", "{{ outputs.a1 + 1 }}"), t("b1", 10),
             t("b2", "{{ outputs.a1 + outputs.b1 }}"), t("j", "{{ outputs.a2 + outputs.b2 }}")]
    edges = [*chain("s", "a1", "a2", "j"), *chain("s", "b1", "b2", "j"),
             {"source": "a1", "target": "b2"}]
    record = await run({"nodes": nodes, "edges": edges})
    assert record.status == "succeeded"
    assert record.node_states["j"].output == 15
    assert run.order("node.started").count("j") == 1


def test_the_compiled_graph_shows_every_workflow_edge() -> None:
    from flowloom import compile_workflow, load_workflow
    doc = {"nodes": [{"id": "c", "type": "condition", "config": {"expression": "inputs.x"}},
                     t("a", 1), t("b", 2), {"id": "j", "type": "join"},
                     {"id": "each", "type": "foreach",
                      "config": {"items": "[1]", "body": {"nodes": [t("x", 1)]}}}],
           "edges": [{"source": "c", "target": "a", "branch": "true"},
                     {"source": "c", "target": "b", "branch": "false"},
                     *chain("a", "j", "each"), *chain("b", "j")]}
    graph = compile_workflow(load_workflow(doc)).get_graph()
    edges = {(e.source, e.target, e.data or "") for e in graph.edges}
    assert edges == {("__start__", "c", ""), ("c", "a", "true"), ("c", "b", "false"),
                     ("a", "j", ""), ("b", "j", ""), ("j", "each", ""),
                     ("each", "each.items", "each item"), ("each", "each.done", ""),
                     ("each.items", "each.done", ""), ("each.done", "__end__", "")}
    assert "c -. &nbsp;true&nbsp; .-> a;" in graph.draw_mermaid()


def test_xray_draws_branches_and_races_as_nested_graphs() -> None:
    from flowloom import compile_workflow, load_workflow
    doc = {"nodes": [t("start", 1), t("a1", 1), delay("d", 1), t("b1", 3), t("b2", 4),
                     join_any("j"), t("after", 1), delay("x", 1), t("x2", 2)],
           "edges": [*chain("start", "a1", "d", "j", "after"), *chain("start", "b1", "j"),
                     *chain("after", "x", "x2"), *chain("after", "b2")]}
    graph = compile_workflow(load_workflow(doc))
    assert {(e.source, e.target) for e in graph.get_graph().edges} == {
        ("__start__", "start"), ("start", "j.race"), ("j.race", "__end__")}
    edges = {(e.source, e.target) for e in graph.get_graph(xray=True).edges}
    side = "j.race:j.side"
    assert {("start", "j.race:__start__"), ("j.race:__start__", "j.race:a1.branch:a1"),
            ("j.race:a1.branch:a1", "j.race:a1.branch:d"),
            ("j.race:a1.branch:d", f"{side}:j"), ("j.race:b1.branch:b1", f"{side}:j"),
            (f"{side}:j", f"{side}:after"), (f"{side}:after", f"{side}:x.branch:x"),
            (f"{side}:x.branch:x", f"{side}:x.branch:x2"),
            (f"{side}:after", f"{side}:b2")} <= edges


class Busy(NodeType):
    """Waits a moment and counts how many of its kind are in flight; fails on `fail_on`."""

    name = "test_busy"
    in_flight = 0
    peak = 0
    calls: list[Any] = []

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        item = ctx.scope.extra.get("item")
        Busy.calls.append(item)
        Busy.in_flight += 1
        Busy.peak = max(Busy.peak, Busy.in_flight)
        try:
            await ctx.services.sleep(0.02)
        finally:
            Busy.in_flight -= 1
        if item == getattr(config, "fail_on", None):
            raise NodeError(f"item {item} failed")
        return item


@pytest.fixture
def busy() -> Iterator[type[Busy]]:
    Busy.in_flight = Busy.peak = 0
    Busy.calls = []
    register_node_type(Busy())
    yield Busy
    NODE_TYPES.pop(Busy.name)


async def test_max_concurrency_caps_the_whole_run_nested_loops_included(
        run: Runner, busy: type[Busy]) -> None:
    inner = {"nodes": [{"id": "work", "type": "test_busy"}]}
    outer = {"nodes": [{"id": "rows", "type": "foreach",
                        "config": {"items": "[1, 2, 3]", "body": inner}}]}
    doc = {"settings": {"max_concurrency": 3},
           "nodes": [{"id": "grid", "type": "foreach",
                      "config": {"items": "[1, 2, 3]", "body": outer}}]}
    record = await run(doc)
    assert record.status == "succeeded"
    assert len(busy.calls) == 9
    assert busy.peak == 3  # nine waiting at once without the run-wide cap


async def test_a_failed_item_stops_the_items_waiting_their_turn(
        run: Runner, busy: type[Busy]) -> None:
    body = {"nodes": [{"id": "work", "type": "test_busy", "config": {"fail_on": 2}}]}
    doc = {"nodes": [{"id": "each", "type": "foreach",
                      "config": {"items": "[1, 2, 3, 4, 5]", "max_concurrency": 1,
                                 "body": body}}]}
    record = await run(doc)
    assert record.status == "failed"
    assert busy.calls == [1, 2]  # 3, 4 and 5 never started
