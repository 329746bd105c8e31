from __future__ import annotations

from typing import Any

from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class FilterConfig(NodeConfig):
    items: str
    condition: str


class Filter(NodeType):
    """Keeps the items for which `condition` (with `item` and `index` in scope) is true."""

    name = "filter"
    waits = False
    Config = FilterConfig
    expressions = ("items", "condition")

    async def run(self, config: FilterConfig, ctx: Context) -> Any:
        items = await ctx.evaluate(config.items, field="items")
        if not isinstance(items, list | tuple):
            raise NodeError(f"`items` must be a list, got {type(items).__name__}",
                            node_id=ctx.node_id, field="items")
        # One evaluation for all items: they share the node's budget.
        keep = await ctx.evaluate_each(config.condition, (
            {"item": item, "index": index} for index, item in enumerate(items)),
            field="condition")
        return [item for item, kept in zip(items, keep, strict=True) if kept]
