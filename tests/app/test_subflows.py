"""Child runs of `subworkflow` nodes: how deep they nest and how a parent's end reaches them."""

from __future__ import annotations

import asyncio
from typing import Any

from flowloom.app.runner import cancel_workflow
from flowloom.app.settings import Settings
from flowloom.app.stores.base import RunQuery
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.app.subflows import MAX_SUBWORKFLOW_DEPTH
from flowloom.graphs.context import NodeContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from tests.conftest import Runner, delay


def sub(node_id: str, **config: object) -> dict[str, object]:
    return {"id": node_id, "type": "subworkflow", "config": config}


async def test_a_self_calling_workflow_stops_at_the_depth_limit(
        run: Runner, store: SqliteStore) -> None:
    await store.put_workflow("again", {"id": "again", "nodes": [sub("call", workflow_id="again")]})
    root = {"id": "root", "nodes": [sub("call", workflow_id="again")]}
    await store.put_workflow("root", root)  # a run names its workflow by its published id
    record = await run(root, execution_id="r")
    assert record.status == "failed" and record.errors[0].type == "SubworkflowFailed"
    deepest = "r" + ".call" * MAX_SUBWORKFLOW_DEPTH
    last = await store.get_run(deepest)
    assert last is not None and last.status == "failed"
    chain = " > ".join(["`root`"] + ["`again`"] * MAX_SUBWORKFLOW_DEPTH)
    assert last.errors[0].type == "LimitExceeded"
    assert last.errors[0].message == (
        "node `call`: subworkflows nest at most MAX_SUBWORKFLOW_DEPTH=8 levels deep; "
        f"chain: {chain} > ...")
    assert "MAX_SUBWORKFLOW_DEPTH=8" in record.errors[0].message
    runs = (await store.list_runs(RunQuery(limit=50))).runs
    assert sorted(r.execution_id for r in runs) == [
        "r" + ".call" * depth for depth in range(MAX_SUBWORKFLOW_DEPTH + 1)]
    assert {r.status for r in runs} == {"failed"}


async def test_a_wide_self_calling_tree_stops_at_the_descendant_limit(
        store: SqliteStore, settings: Settings) -> None:
    # Three calls per level: depth alone would allow 3 + 9 + ... + 3**8 runs.
    fan = {"id": "fan", "nodes": [sub(name, workflow_id="fan") for name in "abc"]}
    await store.put_workflow("fan", fan)
    limited = settings.model_copy(update={"max_descendant_runs": 7})
    run = Runner(limited, store)
    record = await run(fan, execution_id="w")
    assert record.status == "failed" and record.errors[0].type == "SubworkflowFailed"
    assert await store.count_descendants("w") == 7  # refused from the eighth on, exactly
    runs = (await store.list_runs(RunQuery(limit=50))).runs
    assert len(runs) == 8
    assert {r.status for r in runs} <= {"failed", "cancelled"}
    refused = [e for r in runs for e in r.errors if e.type == "LimitExceeded"]
    assert refused and refused[0].message.endswith(
        "has 7 child runs, the limit (FLOWLOOM_MAX_DESCENDANT_RUNS=7) on the subworkflow "
        "runs below one root run")
    assert refused[0].message.startswith("node `")
    assert "run `w` has 7" in refused[0].message


class _FailsOnCue(NodeType):
    """Fails when the test says so: after the child run in the other branch started."""

    name = "test_fails_on_cue"
    cue: asyncio.Event | None = None

    async def run(self, config: object, ctx: NodeContext[Any]) -> object:
        assert self.cue is not None
        await self.cue.wait()
        raise NodeError("the other branch broke")


async def test_a_parent_failing_elsewhere_cancels_its_child(
        run: Runner, store: SqliteStore) -> None:
    fails = _FailsOnCue()
    fails.cue = asyncio.Event()
    register_node_type(fails)
    try:
        child = {"nodes": [delay("nap", 30)]}
        started = asyncio.create_task(run(
            {"nodes": [sub("outer", workflow=child), {"id": "boom", "type": "test_fails_on_cue"}]},
            execution_id="mixed"))
        await _wait_for_node(store, "mixed.outer", "nap")
        fails.cue.set()
        record = await started
    finally:
        NODE_TYPES.pop("test_fails_on_cue")
    assert record.status == "failed" and record.errors[0].node_id == "boom"
    stored = await store.get_run("mixed.outer")
    assert stored is not None
    assert (stored.status, stored.cancelled_by) == ("cancelled", "parent mixed")
    assert stored.node_states["nap"].status == "cancelled"


async def _wait_for_node(store: SqliteStore, execution_id: str, node_id: str) -> None:
    for _ in range(500):
        record = await store.get_run(execution_id)
        if record is not None and node_id in record.node_states:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"node `{node_id}` of {execution_id} never started")


async def test_cancelling_a_parent_cancels_its_children_and_theirs(
        run: Runner, store: SqliteStore) -> None:
    grandchild = {"nodes": [delay("nap", 30)]}
    child = {"nodes": [sub("inner", workflow=grandchild)]}
    task = asyncio.create_task(run({"nodes": [sub("outer", workflow=child)]},
                                   execution_id="top"))
    await _wait_for_node(store, "top.outer.inner", "nap")
    await cancel_workflow("top", by="carol", store=store)
    record = await task
    assert record.status == "cancelled" and record.cancelled_by == "carol"
    for child_id in ("top.outer", "top.outer.inner"):
        stored = await store.get_run(child_id)
        assert stored is not None
        assert (stored.status, stored.cancelled_by) == ("cancelled", "carol")
    inner = await store.get_run("top.outer.inner")
    assert inner is not None and inner.node_states["nap"].status == "cancelled"


async def test_a_parent_timing_out_cancels_its_child(run: Runner, store: SqliteStore) -> None:
    child = {"nodes": [delay("nap", 30)]}
    record = await run({"settings": {"timeout_s": 0.5},
                        "nodes": [sub("outer", workflow=child)]}, execution_id="slow")
    assert record.status == "failed" and record.errors[0].type == "TimeoutError"
    stored = await store.get_run("slow.outer")
    assert stored is not None
    assert (stored.status, stored.cancelled_by) == ("cancelled", "parent slow")


async def _orphaned_parent_and_child(store: SqliteStore) -> None:
    """A parent run and its child, both `running` in a process that died (their records
    say so, and nothing drives them here)."""
    from flowloom.app.records import NodeState
    from flowloom.app.runner import prepare_run
    child = {"nodes": [delay("nap", 30)]}
    _, parent = await prepare_run(store, {"nodes": [sub("outer", workflow=child)]},
                                  execution_id="dead")
    await prepare_run(store, child, execution_id="dead.outer", parent_execution_id="dead")
    parent.node_states["outer"] = NodeState(status="running",
                                            child_execution_id="dead.outer")
    await store.save_run(parent)


async def test_a_child_of_an_orphan_cancelled_meanwhile_is_never_run(
        store: SqliteStore) -> None:
    from flowloom.app.runner import resume_workflow
    await _orphaned_parent_and_child(store)
    await cancel_workflow("dead", by="carol", store=store)
    # Recovery reaches the child first: its parent's cancel stands for it too.
    child = await resume_workflow("dead.outer", store=store, force=True)
    assert (child.status, child.cancelled_by) == ("cancelled", "carol")
    assert await store.list_events("dead.outer") == []  # nothing ran
    parent = await resume_workflow("dead", store=store, force=True)
    assert (parent.status, parent.cancelled_by) == ("cancelled", "carol")
    assert await store.list_events("dead") == []


async def test_cancelling_an_orphaned_parent_cancels_its_child_when_recovered(
        store: SqliteStore) -> None:
    from flowloom.app.runner import resume_workflow
    await _orphaned_parent_and_child(store)
    await cancel_workflow("dead", by="carol", store=store)
    parent = await resume_workflow("dead", store=store, force=True)
    assert (parent.status, parent.cancelled_by) == ("cancelled", "carol")
    stored = await store.get_run("dead.outer")  # cancelled with it, before anyone ran it
    assert stored is not None and (stored.status, stored.cancelled_by) == (
        "cancelled", "carol")
    assert await store.list_events("dead.outer") == []
