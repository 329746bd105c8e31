from __future__ import annotations

from typing import Any

from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class EndConfig(NodeConfig):
    output: Any = None


class End(NodeType):
    """An exit point. Without `output` it passes on what reached it: the one upstream
    output, or `{source_id: output}` when several branches arrived."""

    name = "end"
    waits = False
    Config = EndConfig
    templates = ("output",)
    exit = True
    shape = ("([", "])")

    async def run(self, config: EndConfig, ctx: Context) -> Any:
        if config.output is not None:
            return await ctx.render(config.output, field="output")
        if len(ctx.upstream) == 1:
            return next(iter(ctx.upstream.values()))
        return dict(ctx.upstream) or None
