from __future__ import annotations

from typing import Any

from flowloom.nodes.base import NodeType
from flowloom.nodes.context import NodeContext


class Parallel(NodeType):
    """An explicit fan-out point: every plain edge leaving it runs in parallel."""

    name = "parallel"
    waits = False

    async def run(self, config: Any, ctx: NodeContext) -> Any:
        return None
