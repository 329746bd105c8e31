from __future__ import annotations

from typing import Any

from flowloom.graphs.nodetype import NodeType
from flowloom.nodes.services import Context


class Start(NodeType):
    """An entry point; its output is the run inputs."""

    name = "start"
    waits = False
    entry = True
    shape = ("([", "])")

    async def run(self, config: Any, ctx: Context) -> Any:
        return dict(ctx.scope.inputs)
