from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class SubworkflowConfig(NodeConfig):
    workflow_id: str | None = None
    version: int | None = Field(default=None, ge=1)
    workflow: dict[str, Any] | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> SubworkflowConfig:
        if (self.workflow_id is None) == (self.workflow is None):
            raise ValueError("give either `workflow_id` or an inline `workflow`")
        return self


class Subworkflow(NodeType):
    """Runs a stored or inline workflow as a child run with its own record; the output is
    the child's output. The child's execution id is derived from the parent's and the
    node's path, so a resumed parent resumes (or reuses) the same child."""

    name = "subworkflow"
    Config = SubworkflowConfig
    templates = ("inputs",)
    side_effects = True

    async def run(self, config: SubworkflowConfig, ctx: Context) -> Any:
        subflows = ctx.services.subflows
        if subflows is None:
            raise NodeError("subworkflows need a store: run through the Flowloom runner",
                            node_id=ctx.node_id, kind="ConfigError")
        inputs = await ctx.render(config.inputs, field="inputs")
        output, child_id = await subflows.run(
            parent_execution_id=ctx.run.execution_id, node_path=ctx.path,
            workflow_id=config.workflow_id, version=config.version, workflow=config.workflow,
            inputs=inputs)
        ctx.meta["child_execution_id"] = child_id
        return output

    def nested_bodies(self, raw_config: Mapping[str, Any]) -> dict[str, Any]:
        inline = raw_config.get("workflow")
        return {"workflow": inline} if isinstance(inline, dict) else {}
