"""Around one attempt of a node: the events subscribers get when it starts, waits for an
answer or is cancelled, and the runner's guard that may refuse to start it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.errors import GraphInterrupt

from flowloom import compile_workflow, load_workflow
from flowloom.graphs.context import BasicServices, NodeContext, RunContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from flowloom.nodes.services import Services
from tests.conftest import Runner, t

NOW = 1_750_000_000.0


def wire(events: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in ("seq", "execution_id")}
            for e in events if e["event"] in kinds]


async def test_a_delay_announces_when_it_first_started(run: Runner) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    record = await run({"nodes": [{"id": "d", "type": "delay", "config": {"seconds": 60}}]},
                       services=Services(clock=lambda: NOW, sleep=sleep))
    assert record.status == "succeeded"
    assert slept == [60.0]
    assert wire(run.events, "node.started") == [
        {"event": "node.started", "node_id": "d", "attempt": 1, "at": NOW,
         "first_started_at": NOW}]


async def test_an_approval_announces_its_request_as_it_waits(run: Runner) -> None:
    doc = {"nodes": [{"id": "ok", "type": "approval",
                      "config": {"prompt": "Ship {{ inputs.v }}?"}}]}
    record = await run(doc, {"v": 3}, services=Services(clock=lambda: NOW))
    assert record.status == "waiting"
    assert record.node_states["ok"].status == "waiting"
    assert wire(run.events, "node.started", "node.waiting") == [
        {"event": "node.started", "node_id": "ok", "attempt": 1, "at": NOW},
        {"event": "node.waiting", "node_id": "ok", "at": NOW,
         "request": {"node_id": "ok", "prompt": "Ship 3?", "schema": None}}]


class Gate:
    """Set once the hanging node is inside its attempt."""

    hanging: asyncio.Event


class Hang(NodeType):
    name = "test_hang"
    Config = NodeConfig
    waits = True

    async def run(self, config: NodeConfig, ctx: NodeContext[Any]) -> Any:
        Gate.hanging.set()
        await asyncio.Event().wait()


class FailLater(NodeType):
    """Fails for good, once the hanging node has started."""

    name = "test_fail_later"
    Config = NodeConfig
    waits = True

    async def run(self, config: NodeConfig, ctx: NodeContext[Any]) -> Any:
        await Gate.hanging.wait()
        raise NodeError("gave up")


@pytest.fixture
def gate_types() -> Iterator[None]:
    Gate.hanging = asyncio.Event()
    register_node_type(Hang())
    register_node_type(FailLater())
    yield
    NODE_TYPES.pop(Hang.name)
    NODE_TYPES.pop(FailLater.name)


async def test_a_node_cut_short_by_a_failure_elsewhere_is_cancelled(
        run: Runner, gate_types: None) -> None:
    doc = {"nodes": [{"id": "h", "type": "test_hang"}, {"id": "f", "type": "test_fail_later"}]}
    record = await run(doc, services=Services(clock=lambda: NOW))
    assert record.status == "failed"
    assert [(e.node_id, e.message) for e in record.errors] == [("f", "node `f`: gave up")]
    assert wire(run.events, "node.cancelled") == [
        {"event": "node.cancelled", "node_id": "h", "at": NOW}]
    assert record.node_states["h"].model_dump(include={"status", "finished_at"}) == {
        "status": "cancelled", "finished_at": record.node_states["f"].finished_at}


class Refused(Exception):
    pass


async def test_the_runners_guard_is_asked_before_each_waiting_node_starts() -> None:
    asked: list[int] = []
    events: list[dict[str, Any]] = []

    async def guard() -> None:
        asked.append(len(events))
        if len(asked) == 2:
            raise Refused("the run is another process's now")

    doc = {"nodes": [t("calc", 1), {"id": "d1", "type": "delay", "config": {"seconds": 0}},
                     {"id": "d2", "type": "delay", "config": {"seconds": 0}}],
           "edges": [{"source": "calc", "target": "d1"}, {"source": "d1", "target": "d2"}]}
    graph = compile_workflow(load_workflow(doc))
    context = RunContext("guarded", services=BasicServices(clock=lambda: NOW),
                         emit=events.append, guard=guard)
    with pytest.raises(Refused):
        await graph.ainvoke({"inputs": {}, "run": {}}, context=context)
    # asked once before each delay (a transform only computes), each time before it started
    started = [e["node_id"] for e in events if e["event"] == "node.started"]
    assert started == ["calc", "d1"]
    assert asked == [2, 4]  # after calc's two events; after d1's two more


class BarePause(NodeType):
    """Pauses the run with a bare GraphInterrupt: no request to show."""

    name = "test_bare_pause"
    Config = NodeConfig
    pauses = True
    raised: tuple[Any, ...] = ()

    async def run(self, config: NodeConfig, ctx: NodeContext[Any]) -> Any:
        raise GraphInterrupt(*self.raised)


@pytest.mark.parametrize("raised", [(), ((),)], ids=["no args", "no interrupts"])
async def test_a_pause_without_a_request_announces_it_waits_for_none(
        raised: tuple[Any, ...]) -> None:
    pause = BarePause()
    pause.raised = raised
    register_node_type(pause)
    events: list[Any] = []
    try:
        graph = compile_workflow(load_workflow({"nodes": [{"id": "p",
                                                           "type": "test_bare_pause"}]}))
        await graph.ainvoke({"inputs": {}, "run": {}}, context=RunContext(
            "paused", services=BasicServices(clock=lambda: NOW), emit=events.append))
    finally:
        NODE_TYPES.pop(BarePause.name)
    assert wire(events, "node.started", "node.waiting") == [
        {"event": "node.started", "node_id": "p", "attempt": 1, "at": NOW},
        {"event": "node.waiting", "node_id": "p", "at": NOW, "request": None}]
