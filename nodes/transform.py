from __future__ import annotations

from typing import Any

from flowloom.nodes.base import NodeConfig, NodeType
from flowloom.nodes.context import NodeContext


class TransformConfig(NodeConfig):
    output: Any


class Transform(NodeType):
    """Renders `output`, any JSON value whose strings are templates."""

    name = "transform"
    waits = False
    Config = TransformConfig
    templates = ("output",)

    async def run(self, config: TransformConfig, ctx: NodeContext) -> Any:
        return ctx.render(config.output, field="output")
