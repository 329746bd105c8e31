"""The run-state cap (FLOWLOOM_MAX_RUN_STATE_BYTES) as the compiled graph keeps it: each
output counted about as its JSON, and the node whose output would pass the cap failed,
naming itself, its output's size and the cap."""

from __future__ import annotations

from typing import Any

import pytest

from flowloom import compile_workflow, load_workflow
from flowloom.graphs import budget as budgets
from flowloom.graphs.context import RunContext
from flowloom.graphs.execute import NodeFailed
from tests.conftest import chain, t

LIMIT = "the limit (FLOWLOOM_MAX_RUN_STATE_BYTES) on all outputs of a run"


async def run_capped(doc: dict[str, Any], cap: int,
                     events: list[Any] | None = None) -> RunContext[Any]:
    graph = compile_workflow(load_workflow(doc))
    context: RunContext[Any] = RunContext("r", max_state_bytes=cap,
                                          emit=(events if events is not None else []).append)
    await graph.ainvoke({"inputs": {}, "run": {}}, context=context)
    return context


async def test_each_output_counts_about_as_its_json() -> None:
    doc = {"nodes": [t("s", "abc"),  # 3 characters and 2 quotes: 5
                     t("i", 2 ** 329),  # 330 bits, 31 digits a 100 bits, + 2: 104
                     t("f", 1.5), t("b", True), t("n", None),  # 24 each, unread
                     # {} 2 + 4 a key, "k" 3, [] 2 + 2 an item, 1 and 2 each 2: 19
                     t("d", {"k": [1, 2]})]}
    context = await run_capped(doc, 1_000_000)
    assert context.state_bytes == 5 + 104 + 24 * 3 + 19


async def test_outputs_that_fill_the_cap_exactly_fit() -> None:
    doc = {"nodes": [t("a", "x" * 498), t("b", "y" * 498)], "edges": chain("a", "b")}
    assert (await run_capped(doc, 1_000)).state_bytes == 1_000


async def test_the_output_that_would_pass_the_cap_fails_its_node() -> None:
    events: list[Any] = []
    doc = {"nodes": [t("a", "x" * 498), t("b", "y" * 498), t("c", "z" * 1198)],
           "edges": chain("a", "b", "c")}
    with pytest.raises(NodeFailed) as info:
        await run_capped(doc, 1_000, events)
    message = ("node `c`: its output (1,200 bytes or more) would take the run's state past "
               f"1,000 bytes, {LIMIT}")
    assert (str(info.value), info.value.node_id, info.value.kind) == (
        message, "c", "LimitExceeded")
    [failed] = [e for e in events if e["event"] == "node.failed"]
    assert (failed["node_id"], failed["error"]) == (
        "c", {"type": "LimitExceeded", "message": message})
    assert [e["node_id"] for e in events if e["event"] == "node.succeeded"] == ["a", "b"]


async def test_a_refused_output_is_not_counted() -> None:
    doc = {"nodes": [t("a", "x" * 98), t("big", "z" * 998, on_error="continue"),
                     t("c", "y" * 98)], "edges": chain("a", "big", "c")}
    context = await run_capped(doc, 1_000)
    # a and c, 100 each; big's error output is not an output of the node's own
    assert context.state_bytes == 200


async def test_sizing_an_output_is_not_cut_short_by_a_spent_expression_budget() -> None:
    # 1,100 lists: enough for a timed walk to look at the time; here it is up
    doc = {"nodes": [t("many", [[i] for i in range(1100)])]}
    token = budgets.enter(budgets.Budget(0.5, deadline=0.0))
    try:
        context = await run_capped(doc, 1_000_000)
    finally:
        budgets.leave(token)
    # [] 2 + 2 an item; each [i] 2 + 2, and i 2 + 31 digits a 100 bits (rounded down):
    # 2 for the 8 of up to 3 bits, 3 for 56 up to 6, 4 for 448 up to 9, 5 for 588 more
    assert context.state_bytes == (2 + 2 * 1100 + 4 * 1100
                                   + 2 * 8 + 3 * 56 + 4 * 448 + 5 * 588)
