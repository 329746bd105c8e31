"""`delay` never ends before it is due, even when a timer wakes a little early."""

from __future__ import annotations

from flowloom.nodes.services import Services
from tests.conftest import Runner, delay, t


class EarlyTimers:
    """A clock, and a sleep that wakes 0.4 ms early the first time (as uvloop's
    millisecond timers can)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.asked: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.now += seconds - (0.0004 if len(self.asked) == 1 else 0.0)


async def test_a_delay_that_wakes_early_sleeps_the_rest(run: Runner) -> None:
    timers = EarlyTimers()
    services = Services(clock=timers.clock, sleep=timers.sleep)
    record = await run({"nodes": [delay("nap", 2.0), t("after", "done")],
                        "edges": [{"source": "nap", "target": "after"}]}, services=services)
    assert record.output == "done"
    assert len(timers.asked) == 2 and timers.asked[0] == 2.0
    assert timers.now >= 1002.0  # ended when due, not 0.4 ms before
