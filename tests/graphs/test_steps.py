"""The steps a workflow compiles to, seen from the compiled graph and from runs: the state
each step leaves (the compiler's documented result), the events it sends, what its
expressions see, and races that pause and resume (found unpinned by mutation testing of
graphs/steps.py)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from flowloom import compile_workflow, load_workflow
from flowloom.app.runner import resume_workflow
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.graphs.context import BasicServices, NodeContext, RunContext
from flowloom.graphs.execute import NodeFailed
from flowloom.graphs.nodetype import NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from tests.conftest import Runner, chain, delay, t

NOW = 1_750_000_000.0


def approval(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "approval", "config": {"prompt": f"{node_id}?"}}


def join_any(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "join", "config": {"mode": "any"}}


def condition(node_id: str, expression: str) -> dict[str, Any]:
    return {"id": node_id, "type": "condition", "config": {"expression": expression}}


def branch(source: str, target: str, port: str) -> dict[str, str]:
    return {"source": source, "target": target, "branch": port}


async def final_state(doc: dict[str, Any], inputs: dict[str, Any] | None = None, *,
                      clock: Any = lambda: NOW, events: list[dict[str, Any]] | None = None,
                      run: dict[str, Any] | None = None) -> dict[str, Any]:
    graph = compile_workflow(load_workflow(doc))
    sink = events.append if events is not None else (lambda event: None)
    context = RunContext("run-1", services=BasicServices(clock=clock), emit=sink)
    state: dict[str, Any] = await graph.ainvoke(
        {"inputs": inputs or {}, "run": run or {"id": "run-1", "workflow_id": "wf"}},
        context=context)
    return state


# What a step leaves in the state


async def test_a_node_no_taken_edge_reaches_settles_skipped() -> None:
    doc = {"nodes": [condition("c", "false"), t("yes", 1), t("after", 2), t("no", 3)],
           "edges": [branch("c", "yes", "true"), *chain("yes", "after"),
                     branch("c", "no", "false")]}
    events: list[dict[str, Any]] = []
    state = await final_state(doc, events=events)
    assert state["nodes"] == {"c": {"status": "succeeded", "ports": ["", "false"]},
                              "yes": {"status": "skipped", "ports": []},
                              "after": {"status": "skipped", "ports": []},
                              "no": {"status": "succeeded", "ports": [""]}}
    assert [e for e in events if e["event"] == "node.skipped"] == [
        {"event": "node.skipped", "node_id": "yes", "at": NOW},
        {"event": "node.skipped", "node_id": "after", "at": NOW}]


async def test_a_skip_inside_a_loop_body_is_announced_under_the_items_path() -> None:
    body = {"nodes": [condition("c", "item > 1"), t("big", "{{ item }}")],
            "edges": [branch("c", "big", "true")]}
    doc = {"nodes": [{"id": "each", "type": "foreach",
                      "config": {"items": "[1, 2]", "body": body}}]}
    events: list[dict[str, Any]] = []
    state = await final_state(doc, events=events)
    assert state["outputs"]["each"] == [{}, 2]  # no sink ran for item 1
    assert [e["node_id"] for e in events if e["event"] == "node.skipped"] == ["each[0].big"]


RACE = {"nodes": [t("s", "S"), approval("ask"), t("answered", "A"), t("quick", "Q"),
                  join_any("first"), t("after", "{{ outputs.s }}+{{ outputs.first }}")],
        "edges": [*chain("s", "ask", "answered", "first"), *chain("s", "quick", "first"),
                  *chain("first", "after")]}


async def test_a_race_leaves_its_nodes_in_the_state() -> None:
    # a delay makes the fork a race (branches of transforms alone stay in one task)
    # one; `fin` is triggered by `top` before the race ends, and by the race again
    doc = {"nodes": [t("top", 0), *(delay("ask", 0) if n["id"] == "ask" else n
                                    for n in RACE["nodes"]),
                     t("fin", "{{ outputs.after }}|{{ outputs.top }}")],
           "edges": [*chain("top", "s"), *RACE["edges"], *chain("top", "fin"),
                     *chain("after", "fin")]}
    state = await final_state(doc)
    assert state["outputs"] == {"top": 0, "s": "S", "ask": None, "answered": "A",
                                "quick": "Q", "first": {"quick": "Q"},
                                "after": "S+{'quick': 'Q'}", "fin": "S+{'quick': 'Q'}|0"}
    assert {n: m["status"] for n, m in state["nodes"].items()} == dict.fromkeys(
        ("top", "s", "ask", "answered", "quick", "first", "after", "fin"), "succeeded")


async def test_an_edge_straight_from_the_fork_lets_the_join_go_at_once(run: Runner) -> None:
    doc = {"nodes": [t("s", "S"), approval("ask"), join_any("first"),
                     t("after", "{{ outputs.first }}")],
           "edges": [*chain("s", "ask", "first", "after"), *chain("s", "first")]}
    record = await run(doc)
    assert record.status == "waiting"
    assert record.node_states["after"].output == {"s": "S"}


async def test_what_follows_a_race_reads_what_came_before_and_out_of_it(run: Runner) -> None:
    doc = {"nodes": [*(n for n in RACE["nodes"] if n["id"] != "ask"), t("ask", "slow"),
                     t("end", "{{ outputs.after }}/{{ outputs.answered }}")],
           "edges": [*RACE["edges"], *chain("after", "end"), *chain("answered", "end")]}
    record = await run(doc)
    assert record.status == "succeeded"
    assert record.output == "S+{'quick': 'Q'}/A"


# The first start of a node that checkpoints it


async def test_a_delay_checkpoints_its_first_start_and_counts_from_it() -> None:
    ticks = itertools.count(NOW)
    events: list[dict[str, Any]] = []
    state = await final_state({"nodes": [delay("d", 0)]}, clock=lambda: float(next(ticks)),
                              events=events)
    first = state["progress"]["d"]["first_started_at"]
    assert state["progress"] == {"d": {"first_started_at": first}}
    [started] = [e for e in events if e["event"] == "node.started"]
    assert started["first_started_at"] == first < started["at"]


# What expressions see in each kind of step


async def test_run_names_and_loop_names_reach_every_kind_of_step(run: Runner) -> None:
    body = {"nodes": [t("s", "{{ item }}"), t("a", "{{ run.id }}:{{ item }}"),
                      t("b", "{{ index }}"), {"id": "j", "type": "join"}],
            "edges": [*chain("s", "a", "j"), *chain("s", "b", "j")]}
    doc = {"nodes": [t("top", "{{ run.workflow_id }}"),
                     t("p", "{{ run.id }}"), t("q", "{{ run.workflow_id }}"),
                     {"id": "each", "type": "foreach", "config": {"items": "['x', 'y']",
                                                                  "body": body}},
                     {"id": "end", "type": "join"}],
           "edges": [*chain("top", "p", "end"), *chain("top", "q", "end"),
                     *chain("top", "each", "end")]}
    await run.store.put_workflow("named", {**doc, "id": "named"})
    record = await run({**doc, "id": "named"}, execution_id="run-7")
    assert record.status == "succeeded"
    assert record.output == {"p": "run-7", "q": "named", "each": [
        {"a": "run-7:x", "b": 0}, {"a": "run-7:y", "b": 1}]}


# Races that pause and resume, alone or one per loop item


async def test_each_part_of_a_race_resumes_where_it_stopped(run: Runner,
                                                            store: SqliteStore) -> None:
    doc = {"nodes": [*RACE["nodes"], approval("ask2"), t("answered2", "B")],
           "edges": [*RACE["edges"], *chain("s", "ask2", "answered2", "first")]}
    waiting = await run(doc, execution_id="race-parts")
    assert sorted(w["node_id"] for w in waiting.waiting_for) == ["ask", "ask2"]
    assert waiting.node_states["after"].output == "S+{'quick': 'Q'}"
    events: list[dict[str, Any]] = []
    for node_id in ("ask2", "ask"):
        record = await resume_workflow("race-parts", {"approved": node_id}, node_id=node_id,
                                       store=store, on_event=events.append)
    assert record.status == "succeeded"
    assert {n: record.node_states[n].output for n in ("ask", "ask2", "answered",
                                                       "answered2")} == {
        "ask": {"approved": "ask"}, "ask2": {"approved": "ask2"}, "answered": "A",
        "answered2": "B"}
    started = [e["node_id"] for e in events if e["event"] == "node.started"]
    # the open approval asks again after the first answer; nothing else runs twice
    assert sorted(started) == sorted(["ask", "ask", "ask2", "answered", "answered2"])


async def test_a_race_in_a_loop_body_sees_the_item(run: Runner) -> None:
    body = {"nodes": [t("s", "{{ item }}"), delay("slow", 0), t("quick", "{{ index }}"),
                      join_any("first"), t("out", "{{ item }}/{{ index }}/{{ outputs.s }}")],
            "edges": [*chain("s", "slow", "first"), *chain("s", "quick", "first"),
                      *chain("first", "out")]}
    doc = {"nodes": [{"id": "each", "type": "foreach",
                      "config": {"items": "['a', 'b', 'c']", "body": body}}]}
    record = await run(doc)
    assert record.status == "succeeded"
    assert record.node_states["each"].output == ["a/0/a", "b/1/b", "c/2/c"]


def race(p: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """RACE with its node ids prefixed by `p`."""
    nodes = [t(f"{p}s", p), approval(f"{p}ask"), t(f"{p}answered", f"{p}A"),
             t(f"{p}quick", f"{p}Q"), join_any(f"{p}first"),
             t(f"{p}after", "{{ outputs." + p + "first }}")]
    edges = [*chain(f"{p}s", f"{p}ask", f"{p}answered", f"{p}first"),
             *chain(f"{p}s", f"{p}quick", f"{p}first"), *chain(f"{p}first", f"{p}after")]
    return nodes, edges


async def test_two_races_at_once_each_resume_where_they_stopped(run: Runner,
                                                               store: SqliteStore) -> None:
    (xn, xe), (yn, ye) = race("x"), race("y")
    doc = {"nodes": [t("top", 0), *xn, *yn],
           "edges": [*chain("top", "xs"), *chain("top", "ys"), *xe, *ye],
           "output": "{{ [outputs.xask, outputs.xanswered, outputs.xafter, outputs.yask, "
                     "outputs.yanswered, outputs.yafter] }}"}
    waiting = await run(doc, execution_id="two-races")
    assert sorted(w["node_id"] for w in waiting.waiting_for) == ["xask", "yask"]
    half = await resume_workflow("two-races", {"approved": "y"}, node_id="yask", store=store)
    assert (half.status, [w["node_id"] for w in half.waiting_for]) == ("waiting", ["xask"])
    done = await resume_workflow("two-races", {"approved": "x"}, node_id="xask", store=store)
    assert done.status == "succeeded"
    assert done.output == [{"approved": "x"}, "xA", {"xquick": "xQ"},
                           {"approved": "y"}, "yA", {"yquick": "yQ"}]


# Custom node types see their node; a race ends only once its parts have


class WhoAmI(NodeType):
    name = "test_whoami"

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        return {"id": ctx.node_id, "path": ctx.path, "attempt": ctx.attempt}


class SlowToStop(NodeType):
    """Waits for ever; cut short, it takes a hundred turns of the event loop to stop."""

    name = "test_slow_to_stop"
    waits = True
    stopped: list[str] = []

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            for _ in range(100):
                await asyncio.sleep(0)
            SlowToStop.stopped.append(ctx.path)
            raise


@pytest.fixture
def custom_types() -> Iterator[None]:
    for kind in (WhoAmI(), SlowToStop()):
        register_node_type(kind)
    SlowToStop.stopped = []
    yield
    for kind in (WhoAmI, SlowToStop):
        NODE_TYPES.pop(kind.name)


async def test_a_node_type_sees_its_node_id_and_path(custom_types: None) -> None:
    body = {"nodes": [{"id": "w", "type": "test_whoami"}]}
    doc = {"nodes": [{"id": "w", "type": "test_whoami"},
                     {"id": "each", "type": "foreach", "config": {"items": "[1]", "body": body}}],
           "edges": chain("w", "each")}
    state = await final_state(doc)
    assert state["outputs"]["w"] == {"id": "w", "path": "w", "attempt": 1}
    assert state["outputs"]["each"] == [{"id": "w", "path": "each[0].w", "attempt": 1}]


async def test_a_race_that_fails_ends_after_its_parts_have_stopped(custom_types: None) -> None:
    bad = t("bad", "{{ 1 // 0 }}")
    doc = {"nodes": [t("s", 1), {"id": "slow", "type": "test_slow_to_stop"}, t("quick", 2),
                     join_any("first"), bad],
           "edges": [*chain("s", "slow", "first"), *chain("s", "quick", "first", "bad")]}
    # `slow` waits for ever: if the race did not stop it, only this deadline ends the test
    async with asyncio.timeout(60):
        with pytest.raises(NodeFailed, match="node `bad`"):
            await final_state(doc)
    assert SlowToStop.stopped == ["slow"]  # already, not some turns later
