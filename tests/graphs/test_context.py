"""What a node sees of its run through its context: log lines, the `run` names in
expressions, errors of expressions evaluated outside a node's own code, the one budget
its fields and items share (capped by the run's), and evaluations that leave the event
loop for a worker thread."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from flowloom import compile_workflow, load_workflow
from flowloom.graphs.budget import LOOP_SLICE_SECONDS
from flowloom.graphs.context import NodeContext, RunContext, Scope
from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.execute import NodeFailed
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from flowloom.nodes.services import Services
from tests.conftest import Runner, t

NOW = 1_750_000_000.25


class SayConfig(NodeConfig):
    text: str


class Say(NodeType):
    """Logs its text at the default level, then a warning."""

    name = "test_say"
    Config = SayConfig
    templates = ("text",)

    async def run(self, config: SayConfig, ctx: NodeContext[Any]) -> Any:
        ctx.log(await ctx.render(config.text, field="text"))
        ctx.log("careful", "warning")
        return None


@pytest.fixture
def say() -> Iterator[None]:
    register_node_type(Say())
    yield
    NODE_TYPES.pop("test_say")


async def test_a_node_types_log_lines_reach_the_record_with_path_level_and_time(
        run: Runner, say: None) -> None:
    body = {"nodes": [{"id": "hi", "type": "test_say", "config": {"text": "item {{ item }}"}}]}
    doc = {"nodes": [{"id": "hi", "type": "test_say", "config": {"text": "hello"}},
                     {"id": "each", "type": "foreach",
                      "config": {"items": "[7]", "body": body}}],
           "edges": [{"source": "hi", "target": "each"}]}
    record = await run(doc, services=Services(clock=lambda: NOW))
    assert record.status == "succeeded", record.errors
    at = datetime.fromtimestamp(NOW, UTC)
    assert [log.model_dump() for log in record.logs] == [
        {"at": at, "node_id": "hi", "level": "info", "message": "hello"},
        {"at": at, "node_id": "hi", "level": "warning", "message": "careful"},
        {"at": at, "node_id": "each[0].hi", "level": "info", "message": "item 7"},
        {"at": at, "node_id": "each[0].hi", "level": "warning", "message": "careful"},
    ]
    logged = [{k: e[k] for k in ("node_id", "level", "message", "at")}
              for e in run.events if e["event"] == "log"]
    assert logged[0] == {"node_id": "hi", "level": "info", "message": "hello", "at": NOW}


async def test_expressions_see_the_run_ids(run: Runner) -> None:
    body = {"nodes": [t("inner", "{{ run.id }}")]}
    doc = {"id": "wf-ctx", "nodes": [
        t("outer", "{{ run.id }}/{{ run.workflow_id }}"),
        {"id": "each", "type": "foreach", "config": {"items": "[1]", "body": body}}]}
    record = await run(doc, execution_id="ctx-run")
    assert record.status == "succeeded", record.errors
    assert record.node_states["outer"].output == "ctx-run/wf-ctx"
    assert record.node_states["each"].output == ["ctx-run"]


@pytest.mark.parametrize(("node", "message"), [
    ({"id": "each", "type": "foreach", "config": {
        "items": "inputs.rows.all", "body": {"nodes": [t("x", 1)]}}},
     "node `each`, field `items`: unknown name or attribute: 'dict object' has no "
     "attribute 'rows'"),
    ({"id": "again", "type": "while", "config": {
        "condition": "inputs.more.yes", "body": {"nodes": [t("x", 1)]}}},
     "node `again`, field `condition`: unknown name or attribute: 'dict object' has no "
     "attribute 'more'"),
])
async def test_a_loops_own_expression_error_names_the_loop_and_the_field(
        run: Runner, node: dict[str, Any], message: str) -> None:
    record = await run({"nodes": [node]})
    assert record.status == "failed"
    assert [(e.node_id, e.type, e.message) for e in record.errors] == [
        (node["id"], "ExpressionError", message)]


# The node's budget, and evaluations that leave the loop (NodeContext built directly)

MIB = 1024 * 1024


def spin() -> int:
    """Python that never looks at the budget: only the SIGALRM slice and the worker's
    deadline stop it."""
    return sum(1 for _ in range(10**12))


def node(run: RunContext[Any] | None = None, expressions: Expressions | None = None,
         **inputs: Any) -> NodeContext[Any]:
    return NodeContext("n", "n", Scope(inputs, {}, {}), expressions or Expressions(),
                       run or RunContext("r"))


async def expression(ctx: NodeContext[Any], how: str, text: str, field: str) -> Any:
    """`text` (a bare expression) as a template rendered, an expression evaluated (both
    with `item` 0), or an expression evaluated with `item` 0 and 1: the three ways a node
    evaluates."""
    if how == "render":
        return await ctx.render("{{ " + text + " }}", field=field, item=0)
    if how == "evaluate":
        return await ctx.evaluate(text, field=field, item=0)
    return await ctx.evaluate_each(text, [{"item": 0}, {"item": 1}], field=field)


HOW = ["render", "evaluate", "evaluate_each"]


def refused(info: pytest.ExceptionInfo[ExpressionError]) -> tuple[Any, ...]:
    error = info.value
    return str(error), error.node_id, error.field, error.kind


@pytest.mark.parametrize("how", HOW)
async def test_a_nodes_fields_and_items_share_one_memory_budget(how: str) -> None:
    ctx = node(n=600000)  # (not a constant: Jinja would fold it as it compiles)
    assert await ctx.render("{{ 'x' * 3 }}", field="a") == "xxx"  # starts the budget
    assert ctx.budget is not None
    ctx.budget.max_bytes = MIB
    assert await ctx.evaluate("('x' * inputs.n) | length", field="a") == 600000
    with pytest.raises(ExpressionError) as info:  # 600,000 more bytes: past the MiB
        await expression(ctx, how, "('x' * inputs.n) | length", "b")
    assert refused(info) == ("node `n`, field `b`: limit exceeded: repetition: the node's "
                             "expressions would allocate more than 1 MiB", "n", "b",
                             "LimitExceeded")


@pytest.mark.parametrize("how", HOW)
async def test_the_memory_budget_holds_once_a_nodes_loop_time_is_used_up(how: str) -> None:
    # Each evaluation then goes straight to a thread: what the earlier ones allocated
    # stays charged (it was forgotten: a node could allocate without bound).
    ctx = node(n=600000)
    assert await ctx.render("{{ 'x' * 3 }}", field="a") == "xxx"
    assert ctx.budget is not None
    ctx.budget.max_bytes, ctx.budget.loop_spent = MIB, LOOP_SLICE_SECONDS
    assert await ctx.evaluate("('x' * inputs.n) | length", field="a") == 600000
    with pytest.raises(ExpressionError) as info:
        await expression(ctx, how, "('x' * inputs.n) | length", "b")
    assert refused(info) == ("node `n`, field `b`: limit exceeded: repetition: the node's "
                             "expressions would allocate more than 1 MiB", "n", "b",
                             "LimitExceeded")


async def test_the_items_of_one_evaluation_share_the_node_budget_from_its_start() -> None:
    ctx = node(n=600000)
    assert await ctx.evaluate_each("item * 2", [{"item": 1}, {"item": 4}], field="f") == [2, 8]
    assert ctx.budget is not None
    ctx.budget.max_bytes = MIB
    with pytest.raises(ExpressionError) as info:
        await ctx.evaluate_each("('x' * inputs.n) | length", [{}, {}], field="f")
    assert refused(info) == ("node `n`, field `f`: limit exceeded: repetition: the node's "
                             "expressions would allocate more than 1 MiB", "n", "f",
                             "LimitExceeded")


async def test_an_item_that_fails_names_the_node_and_the_field() -> None:
    ctx = node()
    with pytest.raises(ExpressionError) as info:
        await ctx.evaluate_each("item.x", [{"item": {"x": 1}}, {"item": {}}], field="when")
    assert refused(info) == ("node `n`, field `when`: unknown name or attribute: 'dict "
                             "object' has no attribute 'x'", "n", "when", "ExpressionError")


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("spent", [0.5, 0.75])
async def test_once_the_runs_expression_time_is_spent_every_expression_is_refused(
        how: str, spent: float) -> None:
    ctx = node(RunContext("r", max_expression_seconds=0.5, expression_seconds=spent))
    with pytest.raises(ExpressionError) as info:
        await expression(ctx, how, "1", "out")
    assert refused(info) == ("node `n`, field `out`: limit exceeded: the run's expressions "
                             "took longer than 0.5s in all", "n", "out", "LimitExceeded")


@pytest.mark.parametrize(("spent", "seconds", "why"), [
    (0.0, 0.5, "render took longer than 0.5s"),
    (0.5, 0.5, "render took longer than 0.5s"),  # they end together: the node's words
    (0.75, 0.25, "the run's expressions took longer than 1s in all"),
])
async def test_a_node_gets_its_own_time_or_what_is_left_of_the_runs_if_less(
        spent: float, seconds: float, why: str) -> None:
    ctx = node(RunContext("r", max_expression_seconds=1.0, expression_seconds=spent))
    assert await ctx.render("{{ 20 + 22 }}", field="f") == 42
    assert ctx.budget is not None
    assert (ctx.budget.seconds, ctx.budget.timed_out()) == (seconds, why)


async def test_a_nodes_expression_time_counts_against_the_run() -> None:
    run: RunContext[Any] = RunContext("r")
    ctx = node(run)
    for _ in range(3):
        assert await ctx.evaluate("[1, 2] | sum", field="f") == 3
    assert ctx.budget is not None and ctx.budget.spent != 0.0
    assert run.expression_seconds == ctx.budget.spent  # both summed the same slices


async def test_the_size_limit_is_the_expressions_own() -> None:
    ctx = node(expressions=Expressions(max_output_chars=10), n=10)
    assert await ctx.render("{{ 'x' * inputs.n }}", field="f") == "x" * 10
    with pytest.raises(ExpressionError) as info:
        await ctx.render("{{ 'x' * (inputs.n + 1) }}", field="f")
    assert refused(info) == ("node `n`, field `f`: limit exceeded: repetition would exceed "
                             "10 characters", "n", "f", "LimitExceeded")


@pytest.mark.parametrize("how", HOW)
async def test_an_evaluation_too_long_for_the_loop_answers_from_a_thread(how: str) -> None:
    ctx = node(expressions=Expressions(max_seconds=60))
    text = "(range(100000) | map('string') | join | length) + item"
    answer = await expression(ctx, how, text, "out")
    assert ctx.budget is not None and ctx.budget.loop_spent == LOOP_SLICE_SECONDS  # left
    assert answer == ([488890, 488891] if how == "evaluate_each" else 488890)
    assert ctx.rendered == ({"out": answer} if how != "evaluate_each" else None)


@pytest.mark.parametrize("how", HOW)
async def test_an_evaluation_that_fails_in_a_thread_names_the_node(how: str) -> None:
    ctx = node(expressions=Expressions(max_seconds=60))
    text = "(range(100000) | map('string') | join | length) + inputs.nothing.here"
    with pytest.raises(ExpressionError) as info:
        await expression(ctx, how, text, "out")
    assert ctx.budget is not None and ctx.budget.loop_spent == LOOP_SLICE_SECONDS
    assert refused(info) == ("node `n`, field `out`: unknown name or attribute: 'dict "
                             "object' has no attribute 'nothing'", "n", "out",
                             "ExpressionError")


@pytest.mark.parametrize("how", HOW)
async def test_python_that_never_checks_the_budget_is_stopped_in_its_thread(how: str) -> None:
    ctx = node(expressions=Expressions(max_seconds=0.1), spin=spin)
    with pytest.raises(ExpressionError) as info:
        await expression(ctx, how, "inputs.spin()", "out")
    assert refused(info) == ("node `n`, field `out`: limit exceeded: render took longer "
                             "than 0.1s", "n", "out", "LimitExceeded")


async def test_a_loop_refused_by_the_runs_spent_time_is_named() -> None:
    doc = {"nodes": [{"id": "each", "type": "foreach", "config": {
        "items": "[1]", "body": {"nodes": [t("x", 1)]}}}]}
    graph = compile_workflow(load_workflow(doc))
    with pytest.raises(NodeFailed) as info:
        await graph.ainvoke({"inputs": {}, "run": {}},
                            context=RunContext("r", expression_seconds=30.0))
    assert (str(info.value), info.value.kind) == (
        "node `each`, field `items`: limit exceeded: the run's expressions took longer "
        "than 30s in all", "LimitExceeded")


def test_the_runs_slots_are_one_semaphore_apart_from_every_loops() -> None:
    run: RunContext[Any] = RunContext("XX", max_concurrency=2)
    slot = run.slot()
    assert run.slot() is slot
    for path in ("runXX", "run", "each", "each[0].inner"):  # loops.py's keys for loops
        for key in (f"XX:{path}", f"XX:{path}:chunks"):
            assert run.semaphore(key, 8) is not slot, key
