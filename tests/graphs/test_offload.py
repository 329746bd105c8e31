"""Expressions never hold the event loop: a long evaluation leaves it for a worker thread,
which is stopped at its deadline. Measured by counting the loop's turns, not the clock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from flowloom.graphs.budget import Budget, LimitExceeded
from flowloom.graphs.context import NodeContext, RunContext, Scope
from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.offload import (
    WORKER_THREADS,
    _Stopwatch,
    busy_workers,
    evaluate_budgeted,
)

HEAVY = "{% for i in range(100000) %}{% set x = i * i %}{% endfor %}done"  # 10 ms and more


class Turns:
    """Counts the event loop's turns while something else runs, and the most worker
    threads seen at once."""

    def __init__(self) -> None:
        self.count = 0
        self.most_workers = 0
        self._stop = False

    async def _spin(self) -> None:
        while not self._stop:
            await asyncio.sleep(0)
            self.count += 1
            self.most_workers = max(self.most_workers, busy_workers())

    async def during(self, work: Awaitable[Any]) -> Any:
        spinner = asyncio.create_task(self._spin())
        await asyncio.sleep(0)  # the spinner starts first
        started = self.count
        try:
            return await work
        finally:
            self.count -= started
            self._stop = True
            await spinner


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "flowloom-expression"]


async def no_workers_left(polls: int = 500) -> bool:
    """Whether every worker thread has ended (polled a bounded number of times)."""
    for _ in range(polls):
        if not workers():
            return True
        await asyncio.sleep(0.01)
    return False


def node(expressions: Expressions, run: RunContext[Any] | None = None) -> NodeContext[Any]:
    return NodeContext("n", "n", Scope({"k": 2}, {}, {}), expressions, run or RunContext("r"))


async def test_a_long_evaluation_leaves_the_loop_and_finishes_in_a_thread() -> None:
    turns = Turns()
    ctx = node(Expressions(max_seconds=60))
    assert await turns.during(ctx.render(HEAVY, field="output")) == "done"
    assert turns.count >= 10  # frozen, the loop would have turned once at most
    assert await ctx.render("{{ inputs.k * 21 }}", field="output") == 42  # short: inline
    assert await no_workers_left()


def spin_forever_in_python() -> int:
    """Python that never checks any budget: only an interruption stops it."""
    return sum(1 for _ in range(10**12))


async def test_python_that_never_checks_the_budget_is_stopped_on_the_loop_and_in_the_thread(
) -> None:
    # On the loop, SIGALRM moves it to a thread; there, the deadline stops the thread.
    turns = Turns()
    budget = Budget(0.3)
    with pytest.raises(LimitExceeded, match=r"longer than 0\.3s"):
        await turns.during(evaluate_budgeted(budget, spin_forever_in_python))
    assert turns.count >= 10
    assert await no_workers_left()  # it would spin for hours if it were not stopped


def test_on_a_loop_outside_the_main_thread_the_budget_checks_move_it() -> None:
    outcome: dict[str, Any] = {}

    def other_thread() -> None:
        async def main() -> None:
            turns = Turns()
            outcome["value"] = await turns.during(node(Expressions(max_seconds=60)).render(
                HEAVY, field="output"))
            outcome["turns"] = turns.count
        asyncio.run(main())

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert outcome["value"] == "done" and outcome["turns"] >= 10


async def test_a_filter_shares_one_budget_across_its_items() -> None:
    slow_item = "(range(3000)|map('string')|join)|length > item"  # about a millisecond
    ctx = node(Expressions(max_seconds=0.3))
    assert await ctx.evaluate(slow_item, field="c", item=1) is True  # alone, well within
    with pytest.raises(ExpressionError, match=r"longer than 0\.3s") as info:
        await ctx.evaluate_each(slow_item, [{"item": i} for i in range(10000)],
                                field="condition")
    assert info.value.node_id == "n" and info.value.field == "condition"


async def test_the_run_budget_caps_every_node_of_the_run() -> None:
    run: RunContext[Any] = RunContext("r", max_expression_seconds=0.5)
    slow = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    failures = []
    for _ in range(2):  # the first node spends its 0.3 s; the second gets what is left
        with pytest.raises(ExpressionError) as info:
            await node(Expressions(max_seconds=0.3), run).render(slow, field="output")
        failures.append(info.value.message)
    assert failures == ["limit exceeded: render took longer than 0.3s",
                        "limit exceeded: the run's expressions took longer than 0.5s in all"]
    assert run.expression_seconds >= 0.5


async def test_at_most_a_few_worker_threads_and_every_evaluation_answers() -> None:
    assert await no_workers_left()
    turns = Turns()
    contexts = [node(Expressions(max_seconds=60)) for _ in range(2 * WORKER_THREADS)]
    answers = await turns.during(asyncio.gather(
        *(ctx.render(HEAVY, field="output") for ctx in contexts)))
    assert answers == ["done"] * len(contexts)
    assert 1 <= turns.most_workers <= WORKER_THREADS


async def test_a_cancelled_evaluation_stops_its_thread() -> None:
    task = asyncio.create_task(evaluate_budgeted(Budget(3600), spin_forever_in_python))
    for _ in range(500):  # until it is in a worker thread
        if workers():
            break
        await asyncio.sleep(0.01)
    assert workers()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await no_workers_left()



def test_a_timer_still_pending_at_exit_does_not_kill_the_process() -> None:
    # Python puts SIGALRM back to its default as it shuts down: a timer left pending
    # then would end the process with "Alarm clock" after its work was done.
    child = textwrap.dedent("""
        import asyncio, atexit, signal
        from flowloom.graphs.context import NodeContext, RunContext, Scope
        from flowloom.graphs.expressions import Expressions
        from flowloom.graphs.offload import _Alarm

        async def main():
            ctx = NodeContext("n", "n", Scope({}, {}, {}), Expressions(), RunContext("r"))
            print(await ctx.render("{{ 20 + 22 }}", field="f"))
        asyncio.run(main())
        _Alarm.arm(30)  # as if an evaluation had just armed it
        atexit._run_exitfuncs()
        print(signal.getitimer(signal.ITIMER_REAL))
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["42", "(0.0, 0.0)"]


def test_the_slice_is_over_only_once_the_main_thread_has_run_that_long() -> None:
    # The wall clock says the slice is over; the thread's clock says whether the
    # evaluation used it, or the machine was busy with something else.
    watch = _Stopwatch()
    watch.armed_cpu = time.thread_time()  # armed just now: it has hardly run since
    now = time.monotonic()
    later = watch.extend(now)
    assert later is not None and later > now  # clock-ok: the extension is what is left
    watch.armed_cpu = time.thread_time() - 1.0  # it has run a whole second since
    assert watch.extend(time.monotonic()) is None
