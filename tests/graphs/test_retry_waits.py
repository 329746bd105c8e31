"""How long a node waits between attempts: the node's `retry` settings as LangGraph's
RetryPolicy applies them, and a server's Retry-After on top. The waits are recorded, not
waited: both LangGraph's retry loop and Flowloom's Retry-After wait get an asyncio whose
`sleep` writes its delay down and returns at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.pregel import _retry as langgraph_retry

from flowloom.graphs import execute
from flowloom.graphs.context import NodeContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from tests.conftest import Runner


class RecordingAsyncio:
    """The asyncio module, but `sleep` records its delay and only yields."""

    def __init__(self, slept: list[float]) -> None:
        self.slept = slept

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        self.slept.append(delay)
        await asyncio.sleep(0)
        return result


class BusyConfig(NodeConfig):
    fail: int  # attempts that fail before one succeeds
    retry_after_s: float | None = None


class Busy(NodeType):
    """Fails its first `fail` attempts with a retriable error carrying Retry-After."""

    name = "test_busy"
    Config = BusyConfig
    waits = True

    async def run(self, config: BusyConfig, ctx: NodeContext[Any]) -> Any:
        if ctx.attempt <= config.fail:
            raise NodeError("busy", retriable=True, retry_after_s=config.retry_after_s,
                            kind="Busy")
        return ctx.attempt


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[float]]]:
    slept: dict[str, list[float]] = {"policy": [], "retry_after": []}
    monkeypatch.setattr(langgraph_retry, "asyncio", RecordingAsyncio(slept["policy"]))
    monkeypatch.setattr(execute, "asyncio", RecordingAsyncio(slept["retry_after"]))
    register_node_type(Busy())
    yield slept
    NODE_TYPES.pop(Busy.name)


def busy(fail: int, retry: dict[str, Any], retry_after_s: float | None = None
         ) -> dict[str, Any]:
    return {"nodes": [{"id": "b", "type": "test_busy", "retry": retry,
                       "config": {"fail": fail, "retry_after_s": retry_after_s}}]}


def announced(run: Runner) -> list[tuple[int, float]]:
    return [(e["attempt"], e["delay_s"]) for e in run.events if e["event"] == "node.retrying"]


async def test_backoff_grows_by_its_factor_up_to_the_maximum(
        run: Runner, waits: dict[str, list[float]]) -> None:
    retry = {"max_attempts": 5, "initial_delay_s": 0.5, "backoff": 3, "max_delay_s": 2,
             "jitter": False}
    record = await run(busy(4, retry))
    assert (record.status, record.output, record.node_states["b"].attempts) == (
        "succeeded", 5, 5)
    assert waits["policy"] == [0.5, 1.5, 2, 2]
    assert announced(run) == [(1, 0.5), (2, 1.5), (3, 2), (4, 2)]
    assert waits["retry_after"] == []


async def test_the_last_attempt_is_not_waited_for(
        run: Runner, waits: dict[str, list[float]]) -> None:
    retry = {"max_attempts": 3, "initial_delay_s": 0.25, "backoff": 2, "jitter": False}
    record = await run(busy(5, retry))
    assert (record.status, record.node_states["b"].attempts) == ("failed", 3)
    assert [(e.node_id, e.type, e.message) for e in record.errors] == [
        ("b", "Busy", "node `b`: busy")]
    assert waits["policy"] == [0.25, 0.5]
    assert announced(run) == [(1, 0.25), (2, 0.5)]


async def test_jitter_adds_up_to_a_second_to_each_wait(
        run: Runner, waits: dict[str, list[float]]) -> None:
    retry = {"max_attempts": 3, "initial_delay_s": 0.5, "backoff": 1, "jitter": True}
    record = await run(busy(2, retry))
    assert record.status == "succeeded"
    assert len(waits["policy"]) == 2
    assert all(0.5 < wait < 1.5 for wait in waits["policy"]), waits["policy"]


@pytest.mark.parametrize(("retry_after_s", "extra", "delay_s"), [
    (5.0, [2.5], 3),  # Retry-After past max_delay_s: the cap, less the backoff
    (1.25, [0.75], 1.25),  # the part the backoff does not cover
    (0.5, [], 0.5),  # covered by the backoff
    (0.25, [], 0.5),
])
async def test_retry_after_is_waited_on_top_of_the_backoff_up_to_max_delay(
        run: Runner, waits: dict[str, list[float]], retry_after_s: float,
        extra: list[float], delay_s: float) -> None:
    retry = {"max_attempts": 2, "initial_delay_s": 0.5, "backoff": 2, "max_delay_s": 3,
             "jitter": False}
    record = await run(busy(1, retry, retry_after_s))
    assert (record.status, record.node_states["b"].attempts) == ("succeeded", 2)
    assert waits["policy"] == [0.5]
    assert waits["retry_after"] == extra
    assert announced(run) == [(1, delay_s)]


async def test_retry_after_on_the_last_attempt_is_not_waited_for(
        run: Runner, waits: dict[str, list[float]]) -> None:
    retry = {"max_attempts": 2, "initial_delay_s": 0.5, "backoff": 2, "max_delay_s": 3,
             "jitter": False}
    record = await run(busy(2, retry, 5.0))
    assert (record.status, record.node_states["b"].attempts) == ("failed", 2)
    assert waits["retry_after"] == [2.5]  # after the first attempt only
