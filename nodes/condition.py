from __future__ import annotations

from typing import Any

from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class ConditionConfig(NodeConfig):
    expression: str


class Condition(NodeType):
    """Evaluates a boolean and routes the `true` or the `false` branch."""

    name = "condition"
    waits = False
    Config = ConditionConfig
    expressions = ("expression",)
    ports = frozenset({"true", "false"})
    required_ports = ports
    shape = ("{", "}")

    async def run(self, config: ConditionConfig, ctx: Context) -> Any:
        return bool(await ctx.evaluate(config.expression, field="expression"))

    def route(self, config: Any, output: Any) -> list[str]:
        return ["", "true" if output else "false"]
