"""A node type defined outside the package runs with nothing else changed: the compiler
reads what it needs from the type's attributes, never from its name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from flowloom.graphs.context import NodeContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.foreach import ForeachConfig
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from tests.conftest import Runner, t


class EachConfig(ForeachConfig):
    label: str = "batch"


class Each(NodeType):
    """A `foreach` under another name and with its own config."""

    name = "test_each"
    Config = EachConfig
    expressions = ("items",)
    expands = "fan_out"

    def nested_bodies(self, raw_config: Any) -> dict[str, Any]:
        return {"body": raw_config["body"]}


class NotifyConfig(NodeConfig):
    to: str


class Notify(NodeType):
    """Side-effecting: records each call's idempotency key; fails its first attempt."""

    name = "test_notify"
    Config = NotifyConfig
    templates = ("to",)
    side_effects = True
    calls: ClassVar[list[tuple[str, str, int]]] = []

    async def run(self, config: NotifyConfig, ctx: NodeContext[Any]) -> Any:
        to = await ctx.render(config.to, field="to")
        self.calls.append((to, ctx.idempotency_key, ctx.attempt))
        if ctx.attempt == 1:
            raise NodeError("first attempt fails", retriable=True)
        return {"sent": to}


@pytest.fixture
def custom_types() -> Iterator[None]:
    Notify.calls.clear()
    register_node_type(Each())
    register_node_type(Notify())
    yield
    NODE_TYPES.pop("test_each")
    NODE_TYPES.pop("test_notify")


FAST_RETRY = {"max_attempts": 2, "initial_delay_s": 0, "jitter": False}


async def test_a_custom_fan_out_type_runs_its_body_per_item(run: Runner,
                                                            custom_types: None) -> None:
    doc = {"id": "custom", "nodes": [
        {"id": "each", "type": "test_each",
         "config": {"items": "inputs.people", "item_var": "who", "max_concurrency": 1,
                    "body": {"nodes": [{"id": "note", "type": "test_notify",
                                        "config": {"to": "{{ who }}"}, "retry": FAST_RETRY}]}}},
        t("done", "{{ outputs.each | length }}")],
        "edges": [{"source": "each", "target": "done"}]}
    record = await run(doc, {"people": ["ann", "bob"]}, execution_id="custom-1")
    assert record.status == "succeeded"
    assert record.output == 2
    assert record.node_states["each"].output == [{"sent": "ann"}, {"sent": "bob"}]
    # One key per item path, the same on both attempts of each item (a retry waits
    # outside the item's concurrency slot, so items' attempts may interleave).
    assert sorted(Notify.calls) == [("ann", "custom-1:each[0].note", 1),
                                    ("ann", "custom-1:each[0].note", 2),
                                    ("bob", "custom-1:each[1].note", 1),
                                    ("bob", "custom-1:each[1].note", 2)]
    assert record.node_states["each[1].note"].idempotency_key == "custom-1:each[1].note"


async def test_a_side_effecting_type_shows_its_idempotency_key(run: Runner,
                                                               custom_types: None) -> None:
    doc = {"nodes": [{"id": "tell", "type": "test_notify", "config": {"to": "ann"},
                      "retry": FAST_RETRY}, t("calc", 1)]}
    record = await run(doc, execution_id="custom-2")
    assert record.status == "succeeded"
    assert record.node_states["tell"].idempotency_key == "custom-2:tell"
    assert record.node_states["tell"].attempts == 2
    assert record.node_states["calc"].idempotency_key is None  # computes only


async def test_an_unregistered_type_is_refused_by_name(run: Runner) -> None:
    from flowloom import validate_workflow
    problems = validate_workflow({"nodes": [{"id": "x", "type": "test_each"}]})
    assert [p.path for p in problems] == ["$.nodes[0].type"]
    assert "unknown node type `test_each`" in problems[0].message
