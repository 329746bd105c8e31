"""drive(): a run's outcome in its record, its last events and its log lines, after a
node failure, a run timeout, a failure outside the nodes, a pause and a late start."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowloom.app.lifecycle import live
from flowloom.app.records import RunError
from flowloom.app.runner import prepare_run, resume_workflow
from flowloom.app.settings import load_settings
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.graphs.context import NodeContext
from flowloom.graphs.nodetype import EmptyConfig, NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from flowloom.nodes.services import Services
from tests.conftest import GatedSleep, Runner, chain, delay, t, wait_until

BAD_MESSAGE = "node `bad`, field `output`: ZeroDivisionError: integer division or modulo by zero"


class Sleep:
    """A `Services.sleep` under which short delays pass and long ones (a second or
    more) wait until they are cancelled."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        if seconds >= 1:
            await asyncio.Event().wait()


def approval(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "approval", "config": {"prompt": "ok?"}}


def without_times(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("at", "execution_id", "seq")}


def run_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "flowloom.run"]


async def test_a_failed_node_fails_what_follows_it_and_cancels_the_rest(
        run: Runner, store: SqliteStore) -> None:
    """Three branches: `bad` fails while `slow` runs and `ask` waits for an answer."""
    doc = {"nodes": [t("start", 1), delay("slow", 30), t("after_slow", 2), approval("ask"),
                     t("after_ask", 3), delay("wait", 0.01), t("bad", "{{ 1 // 0 }}"),
                     t("next", 4), t("last", 5)],
           "edges": [*chain("start", "slow", "after_slow"), *chain("start", "ask", "after_ask"),
                     *chain("start", "wait", "bad", "next", "last")]}
    record = await run(doc, execution_id="fan", services=Services(sleep=Sleep()))
    assert record.status == "failed"
    assert record.errors == [RunError(node_id="bad", type="ExpressionError",
                                      message=BAD_MESSAGE)]
    assert {k: v.status for k, v in record.node_states.items()} == {
        "start": "succeeded", "wait": "succeeded", "bad": "failed", "next": "failed",
        "last": "failed", "slow": "cancelled", "after_slow": "cancelled",
        "ask": "cancelled", "after_ask": "cancelled"}
    for node_id in ("next", "last"):
        assert record.node_states[node_id].error == {
            "type": "UpstreamFailed", "message": "upstream node `bad` failed"}
    settled = ("next", "last", "after_slow", "ask", "after_ask")
    assert [n for n in settled if record.node_states[n].finished_at is None] == []
    assert [n for n in settled if record.node_states[n].error is not None] == ["next", "last"]
    assert record.finished_at is not None
    assert without_times(run.events[-1]) == {"event": "run.finished", "status": "failed"}
    assert await store.get_run("fan") == record


async def test_a_loop_running_at_the_timeout_is_cancelled_with_what_follows(
        run: Runner, store: SqliteStore) -> None:
    doc = {"settings": {"timeout_s": 0.5},
           "nodes": [t("a", 1), {"id": "each", "type": "foreach", "config": {
               "items": "[1]", "body": {"nodes": [delay("nap", 30)]}}}, t("after", 2)],
           "edges": chain("a", "each", "after")}
    record = await asyncio.wait_for(run(doc, execution_id="late",
                                        services=Services(sleep=Sleep())), 60)
    assert record.status == "failed"
    assert record.errors == [RunError(type="TimeoutError",
                                      message="run timed out after 0.5s (settings.timeout_s)")]
    assert {k: v.status for k, v in record.node_states.items()} == {
        "a": "succeeded", "each": "cancelled", "each[0].nap": "cancelled",
        "after": "cancelled"}
    assert [n for n in ("each", "after") if record.node_states[n].finished_at is None] == []
    assert [v.error for v in record.node_states.values()] == [None] * 4
    assert record.finished_at is not None
    assert without_times(run.events[-1]) == {"event": "run.finished", "status": "failed"}
    assert await store.get_run("late") == record


async def test_a_store_failure_outside_the_nodes_fails_the_run_and_is_logged(
        run: Runner, store: SqliteStore, caplog: pytest.LogCaptureFixture) -> None:
    """The checkpoints table goes away while `nap` waits: its write fails in LangGraph,
    not in a node, and the run says so."""
    caplog.set_level(logging.INFO, logger="flowloom.run")
    sleep = GatedSleep()
    doc = {"nodes": [t("a", 1), delay("nap", 5), t("b", 2)], "edges": chain("a", "nap", "b")}
    task = asyncio.create_task(run(doc, execution_id="gone", services=Services(sleep=sleep)))

    async def napping() -> bool:
        return len(sleep.asked) == 1

    await wait_until(napping, "`nap` to wait")
    with sqlite3.connect(store.path) as db:
        db.execute("DROP TABLE checkpoints")
    sleep.gate.set()
    record = await asyncio.wait_for(task, 60)
    assert record.status == "failed"
    assert record.errors == [RunError(type="StoreError", message=(
        f"SQLite store {store.path}: no such table: checkpoints"))]
    assert {k: v.status for k, v in record.node_states.items()} == {
        "a": "succeeded", "nap": "succeeded", "b": "cancelled"}
    assert record.node_states["b"].finished_at is not None
    assert record.finished_at is not None
    assert without_times(run.events[-1]) == {"event": "run.finished", "status": "failed"}
    assert run_lines(caplog) == [
        ("INFO", f"run gone of {record.workflow_id} v1 started"),
        ("ERROR", "run gone failed outside its nodes"),
        ("INFO", "run gone failed")]
    assert await store.get_run("gone") == record


async def test_a_pause_says_what_it_waits_for_and_a_success_what_it_made(
        run: Runner, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowloom.run")
    waiting = await run({"nodes": [approval("ask")]}, execution_id="p")
    [pending] = waiting.waiting_for
    assert pending == {"node_id": "ask", "prompt": "ok?", "schema": None,
                       "interrupt_id": pending["interrupt_id"]}
    assert without_times(run.events[-1]) == {"event": "run.waiting",
                                             "waiting_for": [pending]}
    assert (waiting.status, waiting.finished_at) == ("waiting", None)
    done = await run({"nodes": [t("a", {"n": 2})], "output": "{{ a.n * 3 }}"},
                     execution_id="s")
    assert (done.status, done.output) == ("succeeded", 6)
    assert without_times(run.events[-1]) == {"event": "run.finished", "status": "succeeded"}
    assert run_lines(caplog) == [
        ("INFO", f"run p of {waiting.workflow_id} v1 started"), ("INFO", "run p waiting"),
        ("INFO", f"run s of {done.workflow_id} v1 started"), ("INFO", "run s succeeded")]


async def test_the_run_sees_its_id_workflow_and_start(run: Runner) -> None:
    record = await run({"id": "seer", "nodes": [t("who", "{{ run }}")]}, execution_id="me")
    assert record.started_at is not None
    assert record.output == {"id": "me", "workflow_id": "seer",
                             "started_at": record.started_at.isoformat()}


async def test_a_run_stopped_before_its_first_checkpoint_starts_from_its_inputs(
        store: SqliteStore) -> None:
    """A stored `running` record with no checkpoint (its process died at once) and no
    start time: a resume runs it from its inputs, and stamps its start."""
    doc = {"id": "early", "nodes": [t("who", {"n": "{{ inputs.n }}", "run": "{{ run.id }}"})]}
    _, prepared = await prepare_run(store, doc, {"n": 7}, execution_id="orphan")
    assert prepared.started_at is None
    record = await resume_workflow("orphan", store=store, force=True)
    assert (record.status, record.output) == ("succeeded", {"n": 7, "run": "orphan"})
    assert record.started_at is not None


class RunSeen(NodeType):
    """Outputs what its run's context holds."""

    name = "test_run_seen"
    Config = EmptyConfig
    waits = False

    async def run(self, config: EmptyConfig, ctx: NodeContext[Any]) -> Any:
        guard = ctx.run.guard
        if guard is not None:
            await guard()  # the run is this process's: the check passes
        return {"workflow_id": ctx.run.workflow_id, "max_concurrency": ctx.run.max_concurrency,
                "guarded": guard is not None, "max_state_bytes": ctx.run.max_state_bytes,
                "state_bytes": ctx.run.state_bytes}


@pytest.fixture
def run_seen() -> Iterator[None]:
    register_node_type(RunSeen())
    yield
    NODE_TYPES.pop("test_run_seen")


async def test_nodes_see_the_runs_workflow_limits_and_kept_outputs(
        tmp_path: Path, store: SqliteStore, run_seen: None) -> None:
    settings = load_settings(store=f"sqlite:///{tmp_path / 'flowloom.db'}",
                             max_run_state_bytes=2000)
    capped = Runner(settings, store)
    doc = {"id": "seen", "settings": {"max_concurrency": 3},
           "nodes": [t("a", "xyz"), approval("ok"), {"id": "look", "type": "test_run_seen"}],
           "edges": chain("a", "ok", "look")}
    first = await capped(doc, execution_id="kept")
    assert first.status == "waiting"
    done = await resume_workflow("kept", "go", store=store, settings=settings)
    assert done.status == "succeeded"
    # `"xyz"` (5 bytes as JSON) kept from the first part of the run, then `"go"` (4)
    assert done.node_states["look"].output == {
        "workflow_id": "seen", "max_concurrency": 3, "guarded": True,
        "max_state_bytes": 2000, "state_bytes": 9}


async def take_over(store: SqliteStore, execution_id: str) -> None:
    """What another process does once the run looks stale: claim it."""
    seen = await store.get_run(execution_id)
    assert seen is not None and seen.updated_at is not None
    assert await store.claim_run(execution_id, "running", seen.updated_at)


async def napping_run(run: Runner, store: SqliteStore, sleep: GatedSleep) -> asyncio.Task[Any]:
    doc = {"nodes": [t("a", 1), delay("nap", 5), t("b", 2)], "edges": chain("a", "nap", "b")}
    task = asyncio.create_task(run(doc, execution_id="mid", services=Services(sleep=sleep)))

    async def napping() -> bool:
        return len(sleep.asked) == 1

    await wait_until(napping, "`nap` to wait")
    await take_over(store, "mid")
    return task


@pytest.mark.parametrize("by", ["checkpoint", "heartbeat"])
async def test_a_run_taken_over_stops_here_and_says_so(
        run: Runner, store: SqliteStore, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, by: str) -> None:
    """Found by the finished node's checkpoint write (the record's writer kept quiet),
    or by the record's next heartbeat while the node still waits."""
    caplog.set_level(logging.INFO, logger="flowloom.run")
    sleep = GatedSleep()
    if by == "checkpoint":
        monkeypatch.setattr(live, "FLUSH_INTERVAL_S", 3600.0)
    task = await napping_run(run, store, sleep)
    claimed = await store.get_run("mid")
    if by == "checkpoint":
        sleep.gate.set()
    record = await asyncio.wait_for(task, 60)
    assert (record.status, record.finished_at) == ("running", None)
    assert run.events[-1]["event"] != "run.finished"
    assert await store.get_run("mid") == claimed
    assert [line for line in run_lines(caplog) if "taken over" not in line[1]] == [
        ("INFO", f"run mid of {record.workflow_id} v1 started"),
        ("WARNING", "run mid: stopped here, another process owns it now")]
