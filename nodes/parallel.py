from __future__ import annotations

from typing import Any

from nodes.base import NodeType
from nodes.context import NodeContext


class Parallel(NodeType):
    """An explicit fan-out point: every plain edge leaving it runs in parallel."""

    name = "parallel"
    waits = False

    async def run(self, config: Any, ctx: NodeContext) -> Any:
        return None
