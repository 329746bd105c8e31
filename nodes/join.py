from __future__ import annotations

from typing import Any, Literal

from flowloom.nodes.base import NodeConfig, NodeType
from flowloom.nodes.context import NodeContext


class JoinConfig(NodeConfig):
    mode: Literal["all", "any"] = "all"


class Join(NodeType):
    """Waits for every taken branch (`all`) or the first arrival (`any`);
    outputs `{source_id: output}` of what arrived."""

    name = "join"
    waits = False
    Config = JoinConfig

    async def run(self, config: JoinConfig, ctx: NodeContext) -> Any:
        return dict(ctx.upstream)
