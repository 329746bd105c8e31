from __future__ import annotations

from pydantic import Field

from flowloom.nodes.loops import LoopConfig, LoopType


class ForeachConfig(LoopConfig):
    items: str
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    item_var: str = Field(default="item", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class Foreach(LoopType):
    """Runs `body` once per item (a `Send` each), at most `max_concurrency` at once;
    outputs the body outputs in item order. The compiler expands it."""

    name = "foreach"
    Config = ForeachConfig
    expressions = ("items",)
    expands = "fan_out"
    shape = ("[[", "]]")
