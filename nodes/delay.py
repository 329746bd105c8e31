from __future__ import annotations

from typing import Any

from pydantic import Field

from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context

MAX_DELAY_S = 30 * 24 * 3600
EARLY_WAKE_S = 0.01


class DelayConfig(NodeConfig):
    seconds: float | str = Field(description="seconds to wait, or a template giving them")


class Delay(NodeType):
    """Waits until `first_started_at + seconds`. The compiler checkpoints the first start
    before waiting, so a resumed run waits only for what remains."""

    name = "delay"
    Config = DelayConfig
    templates = ("seconds",)
    durable_start = True

    async def run(self, config: DelayConfig, ctx: Context) -> Any:
        seconds = await ctx.render(config.seconds, field="seconds")
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise NodeError(f"`seconds` must be a number, got {seconds!r}",
                            node_id=ctx.node_id, field="seconds") from None
        if not 0 <= seconds <= MAX_DELAY_S:
            raise NodeError(f"`seconds` must be between 0 and {MAX_DELAY_S}, got {seconds:g}",
                            node_id=ctx.node_id, field="seconds")
        due = ctx.first_started_at + seconds
        remaining = due - ctx.services.clock()
        if remaining > 0:
            await ctx.services.sleep(remaining)
            # uvloop's timers count whole milliseconds and can wake up to one early: a
            # delay never ends before it is due.
            early = due - ctx.services.clock()
            if 0 < early < EARLY_WAKE_S:
                await ctx.services.sleep(early + 0.001)
        return None
