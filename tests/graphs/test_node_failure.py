"""What a failed attempt leaves behind: the `node.retrying` and `node.failed` events that
SSE subscribers get, the node state in the record, and the workflow output, on a clock
the test controls."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from flowloom import compile_workflow, load_workflow
from flowloom.graphs.context import NodeContext, RunContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.execute import NodeFailed
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from flowloom.nodes.services import Services
from tests.conftest import Runner, t
from tests.servers import free_port
from tests.service_fixtures import ServiceRunner

START = 1_750_000_000.0
STEP = 0.0123456  # each reading of the clock moves it on; not a round number of ms


def ticking() -> Services:
    ticks = itertools.count()
    return Services(clock=lambda: START + next(ticks) * STEP)


def when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class SendConfig(NodeConfig):
    fail: int = 99  # attempts that fail
    hang: bool = False


class Send(NodeType):
    """A side-effecting call that fails `fail` times (retriable), or never answers."""

    name = "test_send"
    Config = SendConfig
    side_effects = True
    waits = True

    async def run(self, config: SendConfig, ctx: NodeContext[Any]) -> Any:
        if config.hang:
            await asyncio.Event().wait()
        if ctx.attempt <= config.fail:
            raise NodeError(f"refused on attempt {ctx.attempt}", retriable=True,
                            kind="Refused")
        return "sent"


@pytest.fixture
def send_type() -> Iterator[None]:
    register_node_type(Send())
    yield
    NODE_TYPES.pop(Send.name)


NO_WAIT = {"max_attempts": 2, "initial_delay_s": 0, "jitter": False}


def wire(run: Runner, *kinds: str) -> list[dict[str, Any]]:
    """The events as subscribers get them, without the store's numbering."""
    return [{k: v for k, v in e.items() if k not in ("seq", "execution_id")}
            for e in run.events if e["event"] in kinds]


@pytest.mark.parametrize("on_error", ["fail", "continue"])
async def test_a_failed_call_reports_each_attempt_and_keeps_its_key(
        run: Runner, send_type: None, on_error: str) -> None:
    doc = {"nodes": [{"id": "s", "type": "test_send", "retry": NO_WAIT,
                      "on_error": on_error}]}
    record = await run(doc, execution_id="fail-1", services=ticking())
    starts = [e["at"] for e in wire(run, "node.started")]
    assert wire(run, "node.started") == [
        {"event": "node.started", "node_id": "s", "attempt": n, "at": at}
        for n, at in enumerate(starts, 1)]
    [retrying] = wire(run, "node.retrying")
    [failed] = wire(run, "node.failed")
    assert len(starts) == 2 and starts[0] < retrying["at"] < starts[1] < failed["at"]
    assert retrying == {"event": "node.retrying", "node_id": "s", "attempt": 1,
                        "at": retrying["at"], "reason": "node `s`: refused on attempt 1",
                        "delay_s": 0}
    error = {"type": "Refused", "message": "node `s`: refused on attempt 2"}
    latency_ms = round((failed["at"] - starts[1]) * 1000, 3)
    # clock-ok: readings of the test's own ticking clock, not of wall time
    assert latency_ms != round((failed["at"] - starts[1]) * 1000, 4)  # the clock is odd
    # clock-ok: the same readings, compared for equality
    assert failed == {
        "event": "node.failed", "node_id": "s", "attempt": 2, "at": failed["at"],
        "error": error, "handled": on_error == "continue",
        "meta": {"status": "failed", "ports": [""], "attempts": 2, "started_at": starts[1],
                 "finished_at": failed["at"], "latency_ms": latency_ms, "error": error,
                 "idempotency_key": "fail-1:s"}}
    # the record: the node's times are its last attempt's; the retry is logged when it was
    state = record.node_states["s"]
    # clock-ok: the same readings, compared for equality
    assert state.model_dump(include={"status", "attempts", "started_at", "finished_at",
                                     "latency_ms", "error", "idempotency_key"}) == {
        "status": "failed", "attempts": 2, "started_at": when(starts[1]),
        "finished_at": when(failed["at"]), "latency_ms": latency_ms, "error": error,
        "idempotency_key": "fail-1:s"}
    assert [(log.at, log.level, log.message) for log in record.logs] == [
        (when(retrying["at"]), "warning", "retrying: node `s`: refused on attempt 1"),
        (when(failed["at"]), "warning" if on_error == "continue" else "error",
         "node `s`: refused on attempt 2")]


async def test_a_handled_failure_is_a_sink_that_ran(run: Runner, send_type: None) -> None:
    doc = {"nodes": [{"id": "s", "type": "test_send", "retry": {"max_attempts": 1},
                      "on_error": "continue"}, t("ok", 1)]}
    record = await run(doc)
    assert record.status == "succeeded"
    assert record.output == {"s": {"error": {"type": "Refused",
                                             "message": "node `s`: refused on attempt 1"}},
                             "ok": 1}


async def test_a_node_that_outlives_its_timeout_fails_as_a_timeout(
        run: Runner, send_type: None) -> None:
    doc = {"nodes": [{"id": "s", "type": "test_send", "config": {"hang": True},
                      "timeout_s": 0.05, "retry": {"max_attempts": 1}}]}
    record = await run(doc)
    assert [(e.node_id, e.type, e.message) for e in record.errors] == [
        ("s", "TimeoutError", "node `s`: timed out after 0.05s")]
    assert record.node_states["s"].error == {"type": "TimeoutError",
                                             "message": "node `s`: timed out after 0.05s"}


async def test_a_failure_that_fails_the_run_starts_nothing_new(
        run: Runner, send_type: None) -> None:
    one = {"max_attempts": 1}
    doc = {"settings": {"max_concurrency": 1}, "nodes": [
        {"id": "a", "type": "test_send", "retry": one},
        {"id": "b", "type": "test_send", "config": {"fail": 0}},
        {"id": "c", "type": "test_send", "config": {"fail": 0}}]}
    record = await run(doc)
    assert record.status == "failed"
    assert run.order("node.started") == ["a"]  # b and c were waiting for the one slot


async def test_a_failed_item_that_its_loop_takes_over_stops_nothing(
        run: Runner, send_type: None) -> None:
    body = {"nodes": [{"id": "s", "type": "test_send", "retry": {"max_attempts": 1}}]}
    doc = {"settings": {"timeout_s": 30}, "nodes": [
        {"id": "each", "type": "foreach", "on_error": "continue",
         "config": {"items": "[1]", "body": body}},
        {"id": "after", "type": "test_send", "config": {"fail": 0}}],
        "edges": [{"source": "each", "target": "after"}]}
    record = await run(doc)
    assert record.status == "succeeded", record.errors
    assert run.order("node.started") == ["each", "each[0].s", "after"]
    assert record.node_states["after"].output == "sent"


async def test_a_node_that_succeeds_on_a_retry_reports_its_last_attempt(
        run: Runner, send_type: None) -> None:
    doc = {"nodes": [{"id": "s", "type": "test_send", "retry": NO_WAIT, "config": {"fail": 1}}]}
    record = await run(doc, execution_id="ok-1", services=ticking())
    starts = [e["at"] for e in wire(run, "node.started")]
    [succeeded] = wire(run, "node.succeeded")
    latency_ms = round((succeeded["at"] - starts[1]) * 1000, 3)
    # clock-ok: readings of the test's own ticking clock, compared for equality
    assert succeeded == {
        "event": "node.succeeded", "node_id": "s", "attempt": 2, "at": succeeded["at"],
        "output": "sent",
        "meta": {"status": "succeeded", "ports": [""], "attempts": 2, "started_at": starts[1],
                 "finished_at": succeeded["at"], "latency_ms": latency_ms,
                 "idempotency_key": "ok-1:s"}}
    # clock-ok: the same readings
    assert record.node_states["s"].model_dump(include={
        "status", "attempts", "started_at", "finished_at", "latency_ms", "output",
        "idempotency_key"}) == {
        "status": "succeeded", "attempts": 2, "started_at": when(starts[1]),
        "finished_at": when(succeeded["at"]), "latency_ms": latency_ms, "output": "sent",
        "idempotency_key": "ok-1:s"}


async def test_a_failed_call_keeps_its_config_as_rendered_without_credentials(
        run_with: ServiceRunner) -> None:
    url = f"http://127.0.0.1:{free_port()}/{{{{ inputs.where }}}}"  # nothing listens there
    doc = {"nodes": [{"id": "call", "type": "http", "retry": {"max_attempts": 1},
                      "config": {"url": url, "sensitive_headers": ["X-Team"],
                                 "headers": {"X-Team": "{{ inputs.team }}",
                                             "X-Trace": "{{ inputs.trace }}"},
                                 "query": {"q": "{{ inputs.q }}"}}}]}
    record = await run_with(doc, {"where": "orders", "team": "t3am", "trace": "tr1",
                                  "q": "cats"})
    assert record.status == "failed"
    # the header named sensitive is hidden, the query's values masked as in a URL
    config = {"headers": {"X-Team": "[redacted]", "X-Trace": "tr1"}, "query": {"q": "***"},
              "url": url.replace("{{ inputs.where }}", "orders")}
    [failed] = [e for e in run_with.events if e["event"] == "node.failed"]
    assert failed["meta"]["config"] == config
    assert record.node_states["call"].config == config


async def test_a_retry_is_logged_naming_the_node_and_why(
        run: Runner, send_type: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="langgraph")
    doc = {"nodes": [{"id": "s", "type": "test_send", "retry": NO_WAIT, "config": {"fail": 1}}]}
    assert (await run(doc)).status == "succeeded"
    [retried] = [r.getMessage() for r in caplog.records if "Retrying" in r.getMessage()]
    assert retried.endswith("after RetryableFailure node `s`: refused on attempt 1")


async def test_the_failure_that_ends_the_run_carries_the_nodes_meta(send_type: None) -> None:
    events: list[Any] = []
    doc = {"nodes": [{"id": "s", "type": "test_send", "retry": {"max_attempts": 1}}]}
    graph = compile_workflow(load_workflow(doc))
    with pytest.raises(NodeFailed) as info:
        await graph.ainvoke({"inputs": {}, "run": {}},
                            context=RunContext("r", services=ticking(), emit=events.append))
    [failed] = [e for e in events if e["event"] == "node.failed"]
    assert info.value.meta == failed["meta"]
    assert info.value.meta["error"] == {"type": "Refused",
                                        "message": "node `s`: refused on attempt 1"}
