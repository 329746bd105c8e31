from __future__ import annotations

from typing import Any

from flowloom.graphs.nodetype import NodeType
from flowloom.nodes.services import Context


class Parallel(NodeType):
    """An explicit fan-out point: every plain edge leaving it runs in parallel."""

    name = "parallel"
    waits = False

    async def run(self, config: Any, ctx: Context) -> Any:
        return None
