from __future__ import annotations

from typing import Any

from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class TransformConfig(NodeConfig):
    output: Any


class Transform(NodeType):
    """Renders `output`, any JSON value whose strings are templates."""

    name = "transform"
    waits = False
    Config = TransformConfig
    templates = ("output",)

    async def run(self, config: TransformConfig, ctx: Context) -> Any:
        return await ctx.render(config.output, field="output")
