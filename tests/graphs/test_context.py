"""What a node sees of its run through its context: log lines, the `run` names in
expressions, and errors of expressions evaluated outside a node's own code."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from flowloom.graphs.context import NodeContext
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
