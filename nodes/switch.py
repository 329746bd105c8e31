from __future__ import annotations

from typing import Any

from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class SwitchConfig(NodeConfig):
    expression: str
    cases: dict[str, Any]
    default: str | None = None  # the branch taken when no case matches; `default` if unset


class Switch(NodeType):
    """Routes to the first case whose value equals the expression, else to `default`."""

    name = "switch"
    shape = ("{", "}")
    waits = False
    Config = SwitchConfig
    expressions = ("expression",)

    async def run(self, config: SwitchConfig, ctx: Context) -> Any:
        return await ctx.evaluate(config.expression, field="expression")

    def route(self, config: SwitchConfig, output: Any) -> list[str]:
        for case, value in config.cases.items():
            if output == value:
                return ["", case]
        return ["", config.default or "default"]

    def check_ports(self, config: SwitchConfig, labels: set[str]) -> list[str]:
        allowed = set(config.cases) | {config.default or "default"}
        return [f"branch `{label}` is not a case of this switch (cases: "
                f"{', '.join(sorted(allowed))})" for label in sorted(labels - allowed)]
