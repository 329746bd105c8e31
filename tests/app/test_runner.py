"""The in-process runner: run records, inputs, the SQLite store and checkpoints."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any, ClassVar

import pytest

from flowloom.app.records import RunRecord
from flowloom.app.runner import run_workflow
from flowloom.app.settings import Settings
from flowloom.app.stores.base import RunQuery
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.graphs import InputError, NodeError, SpecError, WorkflowError, WorkflowSpec
from flowloom.graphs.context import NodeContext
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from flowloom.nodes.services import Services
from tests.conftest import GatedSleep, Runner, chain, delay, t, wait_until
from tests.servers import SchemaHost

SCHEMA = {"type": "object", "required": ["user"],
          "properties": {"user": {"type": "object", "required": ["age"],
                                  "properties": {"age": {"type": "integer"}}}}}


async def test_record_has_the_shape_of_http_api(run: Runner, store: SqliteStore) -> None:
    doc = {"id": "shape", "nodes": [t("a", "{{ inputs.x }}")]}
    await store.put_workflow("shape", doc)
    record = await run(doc, {"x": 5}, correlation_id="corr-1")
    data = record.model_dump(mode="json")
    assert set(data) == {"execution_id", "workflow_id", "workflow_version", "status", "inputs",
                         "output", "created_at", "started_at", "finished_at", "node_states",
                         "logs", "errors", "correlation_id",
                         # beyond http-api.md: approvals, subworkflow links, cancel,
                         # ownership (the owner's last write, and the owner)
                         "waiting_for", "parent_execution_id", "cancelled_by", "cancelled_at",
                         "updated_at", "owner"}
    assert data["workflow_id"] == "shape" and data["workflow_version"] == 1
    assert data["correlation_id"] == "corr-1"
    state = data["node_states"]["a"]
    assert set(state) == {"status", "output", "attempts", "cached", "started_at",
                          "finished_at", "latency_ms", "error", "model", "usage",
                          "child_execution_id", "idempotency_key",
                          # beyond http-api.md: the config as rendered, a loop's item count
                          "config", "items_total"}
    assert state["config"] == {"output": 5} and state["items_total"] is None
    assert state["status"] == "succeeded" and state["output"] == 5 and state["attempts"] == 1
    assert state["latency_ms"] >= 0


async def test_record_is_stored_and_execution_id_is_the_checkpoint_thread(
        run: Runner, store: SqliteStore, settings: Settings) -> None:
    record = await run({"nodes": [t("a", 1), t("b", 2)], "edges": chain("a", "b")},
                       execution_id="exec-42")
    assert (await store.get_run("exec-42")) == record
    assert settings.sqlite_path is not None
    with sqlite3.connect(settings.sqlite_path) as db:
        threads = {row[0] for row in db.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    assert threads == {"exec-42"}


async def test_duplicate_execution_id_is_refused(run: Runner) -> None:
    await run({"nodes": [t("a", 1)]}, execution_id="same")
    with pytest.raises(WorkflowError, match="execution `same` already exists"):
        await run({"nodes": [t("a", 1)]}, execution_id="same")


async def test_inputs_are_checked_before_anything_runs(run: Runner, store: SqliteStore) -> None:
    doc = {"id": "typed", "inputs_schema": SCHEMA, "nodes": [t("a", 1)]}
    with pytest.raises(InputError) as info:
        await run(doc, {"user": {"age": "old"}})
    assert info.value.path == "$.user.age"
    assert "'old' is not of type 'integer'" in str(info.value)
    assert run.events == []
    assert (await store.list_runs(RunQuery())).runs == []


async def test_invalid_document_raises_before_anything_is_stored(
        run: Runner, store: SqliteStore) -> None:
    with pytest.raises(SpecError):
        await run({"id": "broken", "nodes": [{"id": "a", "type": "nope"}]})
    assert await store.get_workflow("broken") is None


async def test_run_is_pinned_to_the_workflow_version(run: Runner, store: SqliteStore) -> None:
    await store.put_workflow("pinned", {"id": "pinned", "nodes": [t("a", 1)]})
    first = await run({"id": "pinned", "nodes": [t("a", 1)]})
    again = await run({"id": "pinned", "nodes": [t("a", 1)]})
    assert [(r.workflow_id, r.workflow_version) for r in (first, again)] == [("pinned", 1)] * 2
    stored = await store.get_workflow("pinned", 1)
    assert stored is not None and stored.document["nodes"][0]["config"]["output"] == 1


async def test_running_a_changed_document_does_not_publish_it(run: Runner,
                                                            store: SqliteStore) -> None:
    await store.put_workflow("pinned", {"id": "pinned", "nodes": [t("a", 1)]})
    changed = {"id": "pinned", "nodes": [t("a", 2)]}
    record = await run(changed)
    again = await run(changed)
    assert record.output == 2 and record.workflow_id.startswith("inline-")
    assert (again.workflow_id, again.workflow_version) == (record.workflow_id, 1)
    latest = await store.get_workflow("pinned")
    assert latest is not None and latest.version == 1
    assert latest.document["nodes"][0]["config"]["output"] == 1
    ran = await store.get_workflow(record.workflow_id)
    assert ran is not None and ran.document["nodes"][0]["config"]["output"] == 2


async def test_a_first_run_of_a_new_id_files_it_under_that_id(run: Runner,
                                                              store: SqliteStore) -> None:
    first = await run({"id": "draft", "nodes": [t("a", 1)]})
    assert (first.output, first.workflow_id, first.workflow_version) == (1, "draft", 1)
    stored = await store.get_workflow("draft")
    assert stored is not None and stored.version == 1
    # An edit run afterwards is kept apart: `draft` still serves what was stored first.
    edited = await run({"id": "draft", "nodes": [t("a", 2)]})
    assert edited.output == 2 and edited.workflow_id.startswith("inline-")
    latest = await store.get_workflow("draft")
    assert latest is not None and latest.version == 1
    await store.delete_workflow("draft")
    again = await run({"id": "draft", "nodes": [t("a", 1)]})  # deleted: not brought back
    assert again.workflow_id.startswith("inline-")
    assert await store.get_workflow("draft") is None


async def test_inline_workflow_gets_a_stable_content_id(run: Runner) -> None:
    a = await run({"nodes": [t("a", 1)]})
    b = await run({"nodes": [t("a", 1)]})
    assert a.workflow_id == b.workflow_id and a.workflow_id.startswith("inline-")


def test_run_workflow_blocks_and_creates_the_store_on_first_use(settings: Settings) -> None:
    assert settings.sqlite_path is not None and not settings.sqlite_path.exists()
    record = run_workflow({"nodes": [t("a", "hi")]}, settings=settings)
    assert isinstance(record, RunRecord) and record.output == "hi"
    assert settings.sqlite_path.exists()


class Flaky(NodeType):
    """A test node type: fails retriably `fail_times` times, then succeeds."""

    name = "test_flaky"
    calls: ClassVar[dict[str, int]] = {}

    class Config(NodeConfig):
        fail_times: int
        retriable: bool = True

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        count = self.calls[ctx.run.execution_id] = self.calls.get(ctx.run.execution_id, 0) + 1
        if count <= config.fail_times:
            raise NodeError(f"flaky failure {count}", retriable=config.retriable)
        return {"calls": count, "key": ctx.idempotency_key}


@pytest.fixture
def flaky() -> Any:
    register_node_type(Flaky())
    yield Flaky
    NODE_TYPES.pop("test_flaky")


def flaky_node(fail_times: int, retriable: bool = True, attempts: int = 3) -> dict[str, Any]:
    return {"id": "f", "type": "test_flaky",
            "config": {"fail_times": fail_times, "retriable": retriable},
            "retry": {"max_attempts": attempts, "initial_delay_s": 0.01, "jitter": False}}


async def test_retriable_failure_retries_with_langgraph_policy(run: Runner, flaky: Any) -> None:
    record = await run({"nodes": [flaky_node(2)]}, execution_id="flaky-1")
    assert record.status == "succeeded"
    assert record.output["calls"] == 3
    assert record.node_states["f"].attempts == 3
    assert [log.message for log in record.logs] == ["retrying: node `f`: flaky failure 1",
                                                    "retrying: node `f`: flaky failure 2"]


async def test_non_retriable_failure_fails_at_once(run: Runner, flaky: Any) -> None:
    record = await run({"nodes": [flaky_node(1, retriable=False)]}, execution_id="flaky-2")
    assert record.status == "failed"
    assert record.node_states["f"].attempts == 1
    assert Flaky.calls["flaky-2"] == 1


async def test_retries_stop_at_max_attempts(run: Runner, flaky: Any) -> None:
    record = await run({"nodes": [flaky_node(5, attempts=2)]}, execution_id="flaky-3")
    assert record.status == "failed"
    assert Flaky.calls["flaky-3"] == 2
    assert record.errors[0].message == "node `f`: flaky failure 2"


async def test_idempotency_key_is_stable_and_qualified_by_loop_index(
        run: Runner, flaky: Any) -> None:
    record = await run({"nodes": [flaky_node(1)]}, execution_id="keyed")
    assert record.output["key"] == "keyed:f"
    body = {"nodes": [t("x", "{{ item }}")]}
    looped = await run({"nodes": [{"id": "each", "type": "foreach",
                                   "config": {"items": "[1, 2]", "body": body}}]})
    assert {"each[0].x", "each[1].x"} <= set(looped.node_states)


async def test_delay_checkpoints_its_start_before_waiting(run: Runner,
                                                          settings: Settings) -> None:
    sleep = GatedSleep()
    task = asyncio.create_task(run({"nodes": [delay("nap", 30)]}, execution_id="napper",
                                   services=Services(sleep=sleep)))

    async def napping() -> bool:
        return len(sleep.asked) == 1

    await wait_until(napping, "`nap` to start waiting")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert settings.sqlite_path is not None
    with sqlite3.connect(settings.sqlite_path) as db:
        count = db.execute("SELECT count(*) FROM checkpoints WHERE thread_id = 'napper'")
        assert count.fetchone()[0] >= 2  # the input, then the step that stored the deadline


async def test_big_outputs_are_cut_in_the_record_and_whole_in_the_checkpoint(
        run: Runner, settings: Settings) -> None:
    doc = {"nodes": [t("big", "{{ 'x' * 300000 }}"), t("size", "{{ big | length }}")],
           "edges": chain("big", "size")}
    record = await run(doc, execution_id="bigout")
    cut = record.node_states["big"].output
    assert cut["truncated"] is True and cut["size_bytes"] == 300_002
    assert len(cut["preview"]) == 65_536
    assert record.output == 300_000  # the next node saw the whole value
    from flowloom.app.stores.sqlite_saver import InlineSqliteSaver
    assert settings.sqlite_path is not None
    async with InlineSqliteSaver.open(str(settings.sqlite_path)) as saver:
        snapshot = await saver.aget_tuple({"configurable": {"thread_id": "bigout"}})
    assert snapshot is not None
    assert len(snapshot.checkpoint["channel_values"]["outputs"]["big"]) == 300_000


def test_a_workflow_document_is_validated_once_per_content() -> None:
    from flowloom.app.execution import load_spec
    doc = {"id": "memo", "nodes": [t("a", "{{ 1 }}")], "edges": []}
    first = load_spec(doc)
    assert load_spec({"edges": [], "nodes": [t("a", "{{ 1 }}")], "id": "memo"}) is first
    changed = load_spec({**doc, "nodes": [t("a", "{{ 2 }}")]})
    assert changed is not first and changed.nodes[0].config["output"] == "{{ 2 }}"
    bad = {**doc, "edges": [{"source": "a", "target": "nowhere"}]}
    for _ in range(2):  # a refused document is refused every time, never remembered
        with pytest.raises(SpecError, match="nowhere"):
            load_spec(bad)


async def test_inputs_schema_ref_of_a_python_built_spec_is_not_fetched(
        run: Runner, schema_host: tuple[SchemaHost, str]) -> None:
    host, base = schema_host
    # A WorkflowSpec handed in directly skips document validation; the runner still checks.
    spec = WorkflowSpec.model_validate({"inputs_schema": {"$ref": f"{base}/in.json"},
                                        "nodes": [t("a", 1)]})
    with pytest.raises(SpecError) as info:
        await run(spec, {"n": "x"})
    assert [p.path for p in info.value.problems] == ["$.inputs_schema.$ref"]
    assert host.requests == 0
