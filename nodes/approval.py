from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.graphs.schemas import schema_problems
from flowloom.nodes.services import Context


class ApprovalConfig(NodeConfig):
    prompt: str
    answer_schema: dict[str, Any] | None = Field(default=None, alias="schema")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("answer_schema")
    @classmethod
    def _usable_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        problems = schema_problems(schema) if schema is not None else []
        if problems:
            where = f"schema{problems[0].path[1:]}"
            raise PydanticCustomError("json_schema", "{where}: {why}",
                                      {"where": where, "why": problems[0].message})
        return schema


class Approval(NodeType):
    """Pauses the run (LangGraph `interrupt`) until it is resumed with an answer; the
    runner checks the answer against `schema` before resuming. Output: the answer."""

    name = "approval"
    pauses = True
    waits = False
    Config = ApprovalConfig
    templates = ("prompt",)

    async def run(self, config: ApprovalConfig, ctx: Context) -> Any:
        from langgraph.types import interrupt  # the engine: `flowloom validate` needs none

        prompt = await ctx.render(config.prompt, field="prompt")
        return interrupt({"node_id": ctx.path, "prompt": prompt, "schema": config.answer_schema})
