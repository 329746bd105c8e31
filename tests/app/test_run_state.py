"""FLOWLOOM_MAX_RUN_STATE_BYTES: all the outputs one run's nodes produce, loop items
included, are capped; the node whose output would pass the cap fails, naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowloom.app.records import NodeState, RunRecord, kept_bytes
from flowloom.app.runner import resume_workflow
from flowloom.app.settings import SettingsError, load_settings
from flowloom.app.stores.base import RunQuery
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.graphs.limits import MAX_RUN_STATE_BYTES
from tests.conftest import Runner, chain, t

KB10 = "{{ 'x' * 10000 }}"  # an output of 10,002 bytes as JSON


def foreach(items: int) -> dict[str, Any]:
    return {"nodes": [{"id": "each", "type": "foreach", "config": {
        "items": f"range({items})|list", "max_concurrency": 1,
        "body": {"nodes": [t("big", KB10)]}}}]}


@pytest.fixture
def capped(tmp_path: Path, store: SqliteStore) -> Runner:
    settings = load_settings(store=f"sqlite:///{tmp_path / 'flowloom.db'}",
                             max_run_state_bytes=100_000)
    return Runner(settings, store)


async def test_a_foreach_whose_outputs_pass_the_cap_fails_at_the_item_that_would(
        capped: Runner) -> None:
    record = await capped(foreach(40))
    assert record.status == "failed"
    [error] = record.errors
    assert error.type == "LimitExceeded" and error.node_id == "each"
    item = error.message.removeprefix("node `each`: item ").split(" ")[0]
    assert error.message == (
        f"node `each`: item {item} failed: node `big`: its output (10,002 bytes or more) "
        "would take the run's state past 100,000 bytes, the limit "
        "(FLOWLOOM_MAX_RUN_STATE_BYTES) on all outputs of a run")
    done = [e["node_id"] for e in capped.events if e["event"] == "node.succeeded"]
    assert len(done) == 9 and f"each[{item}].big" not in done  # 9 x 10,002 fit, not 10
    page = await capped.store.list_runs(RunQuery())  # and the store reads back
    assert [r.status for r in page.runs] == ["failed"]


async def test_under_the_cap_the_same_run_succeeds(capped: Runner, run: Runner) -> None:
    # 4 items and the foreach's list of them: 80,026 bytes
    assert (await capped(foreach(4))).status == "succeeded"
    assert (await capped(foreach(5))).errors[0].message.startswith("node `each`: its output")
    assert (await run(foreach(40))).status == "succeeded"  # the default cap: 64 MiB


async def test_a_resumed_run_counts_the_outputs_it_already_has(capped: Runner) -> None:
    doc = {"nodes": [t("a", "{{ 'x' * 60000 }}"),
                     {"id": "ok", "type": "approval", "config": {"prompt": "go?"}},
                     t("b", "{{ 'y' * 60000 }}")], "edges": chain("a", "ok", "b")}
    first = await capped(doc, execution_id="kept")
    assert first.status == "waiting"
    resumed = await resume_workflow("kept", {"approved": True}, store=capped.store,
                                    settings=capped.settings)
    assert resumed.status == "failed"
    assert resumed.errors[0].node_id == "b" and "100,000 bytes" in resumed.errors[0].message


def test_kept_bytes_reads_whole_sizes_of_outputs_cut_for_the_record() -> None:
    record = RunRecord(execution_id="r", workflow_id="w", node_states={
        "a": NodeState(status="succeeded", output={"truncated": True, "size_bytes": 500_000,
                                                   "preview": "..."}),
        "b": NodeState(status="succeeded", output="xyz"),
        "c": NodeState(status="skipped")})
    assert kept_bytes(record) == 500_000 + 5


def test_the_cap_is_a_setting() -> None:
    assert load_settings().max_run_state_bytes == MAX_RUN_STATE_BYTES
    with pytest.raises(SettingsError, match="FLOWLOOM_MAX_RUN_STATE_BYTES"):
        load_settings(max_run_state_bytes=10)
