"""What compile_workflow promises (found unpinned by mutation testing of
graphs/compile.py): its errors, the Expressions it is given, a recursion limit that no run
within the document's own limits reaches (however long its loops or branches), loop
bodies of several nodes, loops that hold up no other branch, and the drawing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from flowloom import compile_workflow, load_workflow
from flowloom.app.runner import execute_workflow_async
from flowloom.graphs.compile import compile_workflow as compile_spec
from flowloom.graphs.compile import recursion_limit
from flowloom.graphs.context import NodeContext, RunContext
from flowloom.graphs.errors import CompileError
from flowloom.graphs.execute import NodeFailed
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.nodetype import NodeType
from flowloom.graphs.spec import WorkflowSpec
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from flowloom.nodes.services import Services
from tests.conftest import GatedSleep, Runner, chain, delay, t


def loop(node_id: str, passes: int) -> dict[str, Any]:
    """A while loop that takes all its `passes`."""
    return {"id": node_id, "type": "while",
            "config": {"condition": "true", "max_iterations": passes,
                       "body": {"nodes": [t("x", "{{ loop.iteration }}")]}}}


def foreach(node_id: str, items: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": node_id, "type": "foreach", "config": {"items": items, "body": body}}


async def final_state(doc: dict[str, Any], expressions: Expressions | None = None
                      ) -> dict[str, Any]:
    graph = compile_workflow(load_workflow(doc), expressions=expressions)
    state: dict[str, Any] = await graph.ainvoke({"inputs": {}, "run": {}},
                                                context=RunContext("run-1"))
    return state


# Errors and what the caller hands in


def test_a_spec_the_validator_would_refuse_is_a_compile_error() -> None:
    with pytest.raises(CompileError) as info:
        compile_spec(WorkflowSpec.model_validate({"nodes": []}), node_types=NODE_TYPES)
    assert str(info.value) == "a workflow needs at least one node"
    spec = WorkflowSpec.model_validate({"nodes": [{"id": "a", "type": "zeta"},
                                                  {"id": "b", "type": "beta"}]})
    with pytest.raises(CompileError) as info:
        compile_spec(spec, node_types=NODE_TYPES)
    assert str(info.value) == ("unknown node type `beta`; validate the document with "
                               "load_workflow() first")


async def test_the_expressions_handed_in_are_the_ones_used() -> None:
    doc = {"nodes": [t("a", "{{ 'x' * 10 }}")]}
    assert (await final_state(doc))["outputs"]["a"] == "x" * 10
    with pytest.raises(NodeFailed) as info:
        await final_state(doc, Expressions(max_output_chars=5))
    assert str(info.value) == ("node `a`, field `output`: limit exceeded: repetition would "
                               "exceed 5 characters")


# Recursion limits: every run within the document's limits ends


async def test_a_long_branch_beside_a_short_one_runs_to_its_end(run: Runner) -> None:
    chain_ids = [f"c{i}" for i in range(40)]
    doc = {"nodes": [t("s", 0), delay("d", 0), *(t(n, i) for i, n in enumerate(chain_ids)),
                     t("short", 1)],
           "edges": [*chain("s", "d", *chain_ids), *chain("s", "short")]}
    record = await run(doc)
    assert record.status == "succeeded"
    assert record.node_states["c39"].output == 39


async def test_loops_take_all_their_passes_after_other_nodes(run: Runner) -> None:
    # nodes before a loop count as well as its passes; a foreach after a long loop too
    doc = {"nodes": [*(t(f"p{i}", i) for i in range(5)), loop("w", 50), loop("v", 200),
                     foreach("each", "[1, 2]", {"nodes": [t("y", "{{ item }}")]})],
           "edges": chain("p0", "p1", "p2", "p3", "p4", "w", "v", "each")}
    record = await run(doc)
    assert record.status == "succeeded"
    assert record.node_states["w"].output == {"iterations": 50, "last": 49}
    assert record.node_states["v"].output == {"iterations": 200, "last": 199}
    assert record.node_states["each"].output == [1, 2]


@pytest.mark.parametrize(("outer", "passes"), [
    ({"id": "outer", "type": "while", "config": {"condition": "true", "max_iterations": 1}},
     30),
    (foreach("outer", "[1, 2]", {}), 250)])
async def test_a_loop_in_a_loop_body_takes_all_its_passes(outer: dict[str, Any],
                                                          passes: int) -> None:
    # The outer loop's graph counts its own nodes only; the body runs under its own limit.
    outer["config"]["body"] = {"nodes": [loop("inner", passes)]}
    outputs = (await final_state({"nodes": [outer]}))["outputs"]
    inner = {"iterations": passes, "last": passes - 1}
    assert outputs["outer"] == ({"iterations": 1, "last": inner}
                                if outer["type"] == "while" else [inner, inner])


async def test_loops_past_langgraphs_default_limit_run_at_any_depth() -> None:
    # 5,004 passes take 10,009 steps, past LangGraph's default limit of 10,007: each
    # graph (the workflow's, a branch's, a loop body's) needs its own limit.
    passes = 5004
    doc = {"nodes": [loop("top", passes), t("s", 0), delay("d", 0), loop("inbranch", passes),
                     t("other", 1),
                     foreach("each", "[1]", {"nodes": [t("b0", 0), loop("inbody", passes)],
                                             "edges": chain("b0", "inbody")})],
           "edges": [*chain("top", "s", "d", "inbranch"), *chain("s", "other"),
                     *chain("s", "each")]}
    outputs = (await final_state(doc))["outputs"]
    done = {"iterations": passes, "last": passes - 1}
    assert outputs["top"] == outputs["inbranch"] == done
    assert outputs["each"] == [done]


def test_the_step_bound_is_ten_three_per_node_and_two_per_pass_or_wave() -> None:
    def limit(doc: dict[str, Any], only: set[str] | None = None) -> int:
        return recursion_limit(load_workflow(doc), NODE_TYPES, only)

    two = {"nodes": [t("a", 1), t("b", 2)], "edges": chain("a", "b")}
    assert limit({"nodes": [t("a", 1)]}) == 13
    assert limit(two) == 16
    assert limit(two, {"b"}) == 13  # a branch counts its own nodes only
    assert limit({"nodes": [loop("w", 5)]}) == 25  # 10 + 3 + 2 * 5 passes + 2
    # 10 + 3 + 2 * (100_000 items // waves of 512 + 1) + 2
    assert limit({"nodes": [foreach("e", "[1]", {"nodes": [t("x", 1)]})]}) == 407


# Loop bodies and branches


async def test_a_body_of_two_nodes_without_edges_runs_both() -> None:
    body = {"nodes": [t("a", "{{ item }}"), t("b", "{{ item * 2 }}")]}
    state = await final_state({"nodes": [foreach("each", "[1, 2]", body)]})
    assert state["outputs"]["each"] == [{"a": 1, "b": 2}, {"a": 2, "b": 4}]


@pytest.mark.parametrize("looping", [
    foreach("each", "[1, 2]", {"nodes": [delay("wait", 1)]}),
    {"id": "each", "type": "while", "config": {"condition": "true", "max_iterations": 2,
                                               "body": {"nodes": [delay("wait", 1)]}}},
])
async def test_a_loop_holds_up_no_node_of_another_branch(run: Runner,
                                                         looping: dict[str, Any]) -> None:
    sleep = GatedSleep()
    done: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "node.succeeded":
            done.append(event["node_id"])
            if event["node_id"] == "b3":  # the other branch is through: let the loop go
                sleep.gate.set()

    doc = {"nodes": [t("s", 0), looping, t("b1", 1), t("b2", 2), t("b3", 3)],
           "edges": [*chain("s", "each"), *chain("s", "b1", "b2", "b3")]}
    async with asyncio.timeout(30):  # generous: only a hang (the loop holding b2) trips it
        record = await execute_workflow_async(doc, {}, settings=run.settings,
                                              store=run.store, services=Services(sleep=sleep),
                                              on_event=on_event)
    assert record.status == "succeeded"
    assert done.index("b3") < done.index("each")


class Stamp(NodeType):
    """Checkpoints its first start, yet only computes (as no built-in type does)."""

    name = "test_stamp"
    durable_start = True
    waits = False

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        return "stamped"


class Awaits(NodeType):
    """Awaits something outside (as a request does), nothing more."""

    name = "test_awaits"

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        return "awaited"


@pytest.fixture
def stamp() -> Iterator[None]:
    for kind in (Stamp(), Awaits()):
        register_node_type(kind)
    yield
    for name in (Stamp.name, Awaits.name):
        NODE_TYPES.pop(name)


def steps_of(doc: dict[str, Any]) -> set[str]:
    return set(compile_workflow(load_workflow(doc)).get_graph().nodes) - {
        "__start__", "__end__"}


@pytest.mark.parametrize(("side", "steps"), [
    ([t("a", 0), t("a2", 0)], {"s", "a", "a2", "b"}),  # single steps all: left shared
    ([loop("a", 2)], {"s", "a.branch", "b"}),  # a loop takes several steps
    ([{"id": "a", "type": "test_stamp"}], {"s", "a.branch", "b"}),  # a durable start too
    ([{"id": "a", "type": "test_awaits"}, t("a2", 0)], {"s", "a.branch", "b"}),  # awaits
])
def test_a_fork_is_split_when_a_branch_holds_a_step_open(
        stamp: None, side: list[dict[str, Any]], steps: set[str]) -> None:
    assert steps_of({"nodes": [t("s", 0), *side, t("b", 1)],
                     "edges": [*chain("s", *(n["id"] for n in side)), *chain("s", "b")]}
                    ) == steps


async def test_a_durable_start_in_its_own_branch_runs(stamp: None) -> None:
    doc = {"nodes": [t("s", 0), {"id": "a", "type": "test_stamp"}, t("b", 1)],
           "edges": [*chain("s", "a"), *chain("s", "b")]}
    assert (await final_state(doc))["outputs"] == {"s": 0, "a": "stamped", "b": 1}


def test_a_branch_subgraph_has_the_step_bound_of_its_own_nodes() -> None:
    doc = {"nodes": [t("s", 0), t("a1", 1), delay("a2", 0), t("b", 2)],
           "edges": [*chain("s", "a1", "a2"), *chain("s", "b")]}
    graph = compile_workflow(load_workflow(doc))
    drawn: list[Any] = list(graph.nodes["a1.branch"].subgraphs)
    [branch] = drawn
    assert branch.config["recursion_limit"] == 16  # 10 + 3 per node, a1 and a2
    assert graph.config is not None and graph.config["recursion_limit"] == 22


def test_the_graph_declares_its_run_context_and_names_its_races() -> None:
    doc = {"nodes": [t("s", 0), delay("slow", 0), t("quick", 1),
                     {"id": "first", "type": "join", "config": {"mode": "any"}}],
           "edges": [*chain("s", "slow", "first"), *chain("s", "quick", "first")]}
    graph = compile_workflow(load_workflow(doc))
    assert graph.context_schema is RunContext
    [race] = graph.nodes["first.race"].subgraphs
    assert race.name == "first.race"
    assert set(race.get_graph().nodes) == {"__start__", "slow.branch", "quick.branch",
                                           "first.side", "__end__"}


# The drawing (`get_graph()`, Mermaid)


def test_the_drawing_names_the_workflow_and_labels_its_edges() -> None:
    doc = {"id": "drawn",
           "nodes": [{"id": "c", "type": "condition", "config": {"expression": "inputs.x"}},
                     t("a1", 1), delay("a2", 0), t("b", 2), {"id": "j", "type": "join"}],
           "edges": [{"source": "c", "target": "a1", "branch": "true"},
                     {"source": "c", "target": "a1", "branch": "false"},
                     {"source": "c", "target": "b", "branch": "false"},
                     *chain("a1", "a2", "j"), *chain("b", "j")]}
    graph = compile_workflow(load_workflow(doc))
    assert graph.name == "drawn"
    assert {(e.source, e.target, e.data) for e in graph.get_graph().edges} == {
        ("__start__", "c", None), ("c", "a1.branch", "true/false"), ("c", "b", "false"),
        ("a1.branch", "j", None), ("b", "j", None), ("j", "__end__", None)}
    assert compile_workflow(load_workflow({"nodes": [t("a", 1)]})).name == "workflow"


def test_the_drawing_shows_a_loop_going_round() -> None:
    doc = {"nodes": [t("s", 0), loop("w", 3), t("after", 1)], "edges": chain("s", "w", "after")}
    graph = compile_workflow(load_workflow(doc)).get_graph()
    assert {(e.source, e.target, e.data) for e in graph.edges} == {
        ("__start__", "s", None), ("s", "w", None), ("w", "w.body", "again"),
        ("w.body", "w", None), ("w", "after", ""), ("after", "__end__", None)}
    mermaid = graph.draw_mermaid()
    assert "\ts -.-> w;\n" in mermaid and "\tw -. &nbsp;again&nbsp; .-> w\\2ebody;\n" in mermaid


async def test_a_delay_alone_in_a_loop_body_resumes_counting_from_its_first_start() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from flowloom.graphs.context import BasicServices

    now = [1000.0]
    sleep = GatedSleep()
    doc = {"nodes": [foreach("each", "[1]", {"nodes": [delay("wait", 60)]})]}
    graph = compile_workflow(load_workflow(doc), checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    events: list[dict[str, Any]] = []

    def context() -> RunContext[Any]:
        return RunContext("run-1", services=BasicServices(clock=lambda: now[0], sleep=sleep),
                          emit=events.append)

    first = asyncio.create_task(graph.ainvoke({"inputs": {}, "run": {}}, config,
                                              context=context(), durability="sync"))
    for _ in range(1000):  # until the delay sleeps (polled, bounded)
        if sleep.asked:
            break
        await asyncio.sleep(0.01)
    assert sleep.asked == [60.0]
    first.cancel()  # as a crash would, mid-delay
    with pytest.raises(asyncio.CancelledError):
        await first
    now[0] = 1045.0  # resumed 45 s later: 15 s are left
    sleep.gate.set()
    state = await graph.ainvoke(None, config, context=context(), durability="sync")
    assert state["outputs"]["each"] == [None]
    assert sleep.asked == [60.0, 15.0]
    started = [e for e in events if e["event"] == "node.started" and e["node_id"] != "each"]
    assert [e["first_started_at"] for e in started] == [1000.0, 1000.0]
