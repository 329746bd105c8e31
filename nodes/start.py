from __future__ import annotations

from typing import Any

from flowloom.nodes.base import NodeType
from flowloom.nodes.context import NodeContext


class Start(NodeType):
    """An entry point; its output is the run inputs."""

    name = "start"
    waits = False

    async def run(self, config: Any, ctx: NodeContext) -> Any:
        return dict(ctx.scope.inputs)
