from __future__ import annotations

from typing import Any

from pydantic import Field

from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class ActionConfig(NodeConfig):
    tool: str
    action: str
    connection_id: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)


class Action(NodeType):
    """A tool call through the configured tool provider; output the tool's result."""

    name = "action"
    Config = ActionConfig
    templates = ("input",)
    side_effects = True

    async def run(self, config: ActionConfig, ctx: Context) -> Any:
        provider = ctx.services.tools
        if provider is None:
            raise NodeError("no tool provider configured (set COMPOSIO_BASE_URL)",
                            node_id=ctx.node_id, kind="ConfigError")
        arguments = await ctx.render(config.input, field="input")
        return await provider.execute(tool=config.tool, action=config.action,
                                      connection_id=config.connection_id,
                                      arguments=arguments, idempotency_key=ctx.idempotency_key)
