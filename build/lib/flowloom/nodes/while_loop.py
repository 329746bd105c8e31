from __future__ import annotations

from pydantic import Field

from flowloom.nodes.loops import LoopConfig, LoopType


class WhileConfig(LoopConfig):
    condition: str
    max_iterations: int = Field(default=100, ge=1, le=10_000)


class While(LoopType):
    """Runs `body` while `condition` holds (checked before each pass), at most
    `max_iterations` passes; outputs `{"iterations", "last"}`. The compiler expands it."""

    name = "while"
    Config = WhileConfig
    expressions = ("condition",)
    expands = "repeat"
    shape = ("[[", "]]")

    def max_passes(self, config: WhileConfig) -> int:
        return config.max_iterations
