from __future__ import annotations

from typing import Any, Literal

from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class JoinConfig(NodeConfig):
    mode: Literal["all", "any"] = "all"


class Join(NodeType):
    """Waits for every taken branch (`all`) or the first arrival (`any`);
    outputs `{source_id: output}` of what arrived."""

    name = "join"
    waits = False
    Config = JoinConfig

    def join_any(self, config: JoinConfig) -> bool:
        return config.mode == "any"

    async def run(self, config: JoinConfig, ctx: Context) -> Any:
        return dict(ctx.upstream)
