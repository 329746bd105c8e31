"""One contract suite for every store backend: SQLite; MongoDB on SecantusDB, a real
wire-protocol server started by a fixture; and a MongoDB server of your own when
FLOWLOOM_TEST_MONGODB_URI is set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pymongo import AsyncMongoClient
from pymongo.monitoring import CommandListener, CommandStartedEvent

from flowloom.app.records import NodeState, RunError, RunRecord
from flowloom.app.runner import execute_workflow_async, resume_workflow
from flowloom.app.settings import load_settings
from flowloom.app.stores.base import RunQuery, Store
from flowloom.app.stores.mongo import MongoStore
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.graphs.context import NodeContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from tests.conftest import chain, t


def record(execution_id: str, at: datetime, **fields: object) -> RunRecord:
    return RunRecord(execution_id=execution_id, created_at=at, **fields)  # type: ignore[arg-type]


async def test_workflow_versions(backend: Store) -> None:
    v1 = await backend.put_workflow("wf", {"nodes": [t("a", 1)], "version": 1})
    same = await backend.put_workflow("wf", {"nodes": [t("a", 1)], "version": 1})
    v2 = await backend.put_workflow("wf", {"nodes": [t("a", 2)]})
    forced = await backend.put_workflow("wf", {"nodes": [t("a", 2)]}, new_version=True)
    assert (v1.version, same.version, v2.version, forced.version) == (1, 1, 2, 3)
    old = await backend.get_workflow("wf", 1)
    assert old is not None and old.document["nodes"][0]["config"]["output"] == 1
    latest = await backend.get_workflow("wf")
    assert latest is not None and latest.version == 3 and latest.document["id"] == "wf"
    await backend.put_workflow("other", {"nodes": [t("b", 1)]})
    assert [(w.id, w.version) for w in await backend.list_workflows()] == [("other", 1),
                                                                           ("wf", 3)]
    assert await backend.get_workflow("missing") is None


async def test_deleted_workflow_keeps_its_versions_for_history(backend: Store) -> None:
    await backend.put_workflow("gone", {"nodes": [t("a", 1)]})
    assert await backend.delete_workflow("gone") is True
    assert await backend.delete_workflow("gone") is False
    assert await backend.get_workflow("gone") is None
    kept = await backend.get_workflow("gone", 1, include_deleted=True)
    assert kept is not None
    assert [w.id for w in await backend.list_workflows()] == []
    again = await backend.put_workflow("gone", {"nodes": [t("a", 1)]})
    assert again.version == 1 and await backend.get_workflow("gone") is not None


async def test_run_round_trip_and_update(backend: Store) -> None:
    now = datetime.now(UTC)
    run = record("r1", now, workflow_id="wf", workflow_version=2, status="running",
                 inputs={"x": 1}, node_states={"a": NodeState(status="succeeded", output=[1])})
    await backend.save_run(run)
    run.status, run.output = "succeeded", {"ok": True}
    await backend.save_run(run)
    stored = await backend.get_run("r1")
    assert stored is not None
    assert stored.model_dump(exclude={"created_at"}) == run.model_dump(exclude={"created_at"})
    drift = abs((stored.created_at - run.created_at).total_seconds())
    assert drift < 0.001  # clock-ok: stored precision (MongoDB keeps ms), not a duration
    assert await backend.get_run("nope") is None


async def test_history_is_newest_first_filtered_and_paginated(backend: Store) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)  # within retention: MongoDB's TTL applies
    for i in range(7):
        status = "failed" if i % 3 == 0 else "succeeded"
        await backend.save_run(record(f"r{i}", base + timedelta(minutes=i),
                                      workflow_id="a" if i < 5 else "b", status=status))
    tie = base + timedelta(minutes=10)  # same instant: the execution id breaks the tie
    for suffix in "xyz":
        await backend.save_run(record(f"t{suffix}", tie, workflow_id="a", status="succeeded"))
    page = await backend.list_runs(RunQuery(limit=4))
    assert [r.execution_id for r in page.runs] == ["tz", "ty", "tx", "r6"]
    seen = [r.execution_id for r in page.runs]
    while page.next_cursor:
        page = await backend.list_runs(RunQuery(limit=4, cursor=page.next_cursor))
        seen += [r.execution_id for r in page.runs]
    assert seen == ["tz", "ty", "tx", "r6", "r5", "r4", "r3", "r2", "r1", "r0"]
    only_a = await backend.list_runs(RunQuery(workflow_id="a", status="failed"))
    assert [r.execution_id for r in only_a.runs] == ["r3", "r0"]
    window = await backend.list_runs(RunQuery(since=base + timedelta(minutes=2),
                                              until=base + timedelta(minutes=5)))
    assert [r.execution_id for r in window.runs] == ["r4", "r3", "r2"]
    filtered = await backend.list_runs(RunQuery(workflow_id="a", limit=2))
    rest = await backend.list_runs(RunQuery(workflow_id="a", limit=10,
                                            cursor=filtered.next_cursor))
    assert [r.execution_id for r in filtered.runs + rest.runs] == [
        "tz", "ty", "tx", "r4", "r3", "r2", "r1", "r0"]
    assert rest.next_cursor is None


async def test_history_finds_runs_by_a_part_of_an_error_message(backend: Store) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    messages = [["node `call`: GET https://a.example/ failed: ReadTimeout"], [],
                ["node `x`: 100% of quota_used"], ["first", "then a READTIMEOUT again"],
                ["node `call`: GET https://a.example/ failed: ReadTimeout"]]
    for i, texts in enumerate(messages):
        await backend.save_run(record(f"e{i}", base + timedelta(minutes=i), status=(
            "failed" if texts else "succeeded"), errors=[
                RunError(node_id="n", type="NodeError", message=m) for m in texts]))
    found = await backend.list_runs(RunQuery(error="readtimeout"))
    assert [r.execution_id for r in found.runs] == ["e4", "e3", "e0"]  # any case, any message
    paged = await backend.list_runs(RunQuery(error="ReadTimeout", limit=2))
    rest = await backend.list_runs(RunQuery(error="ReadTimeout", cursor=paged.next_cursor))
    assert [r.execution_id for r in paged.runs + rest.runs] == ["e4", "e3", "e0"]
    # the text is matched as it is: `%`, `_` and regex characters are not patterns
    assert [r.execution_id for r in (await backend.list_runs(
        RunQuery(error="100% of quota_"))).runs] == ["e2"]
    assert (await backend.list_runs(RunQuery(error="1_0"))).runs == []
    assert (await backend.list_runs(RunQuery(error="a.example/ failed: Read.*"))).runs == []
    assert (await backend.list_runs(RunQuery(error="x%"))).runs == []


async def test_event_log_appends_in_order_and_ignores_replays(backend: Store) -> None:
    events = [{"seq": i, "event": "node.started", "node_id": f"n{i}"} for i in range(1, 4)]
    await backend.append_events("run", events[:2])
    await backend.append_events("run", events[1:])  # seq 2 again, as after a retried flush
    assert await backend.list_events("run") == events
    assert await backend.list_events("run", after=2) == events[2:]
    assert await backend.list_events("other") == []


async def test_record_and_its_events_are_saved_together(backend: Store) -> None:
    run = record("together", datetime.now(UTC), status="running")
    events = [{"seq": 1, "event": "run.started"}, {"seq": 2, "event": "node.started"}]
    await backend.save_run_with_events(run, events)
    run.status = "succeeded"
    await backend.save_run_with_events(run, [*events[1:], {"seq": 3, "event": "run.finished"}])
    assert [e["seq"] for e in await backend.list_events("together")] == [1, 2, 3]
    stored = await backend.get_run("together")
    assert stored is not None and stored.status == "succeeded"


async def test_values_json_allows_are_stored_whole(backend: Store) -> None:
    # JSON numbers past 64 bits are common (tweet ids, big counters); BSON has no such int.
    big = {"id": 2**70, "negative": -(2**65), "text": "ü\u0000", "nested": [{"x": 1.5}]}
    run = record("big", datetime.now(UTC), status="succeeded", output=big)
    await backend.save_run_with_events(run, [{"seq": 1, "event": "node.succeeded",
                                              "output": big}])
    stored = await backend.get_run("big")
    assert stored is not None and stored.output == big
    assert (await backend.list_events("big"))[0]["output"] == big
    page = await backend.list_runs(RunQuery(limit=5))
    assert [r.output for r in page.runs] == [big]


async def test_cancel_request_survives_record_saves(backend: Store) -> None:
    run = record("c1", datetime.now(UTC), status="running")
    await backend.save_run(run)
    assert await backend.cancel_requested("c1") is None
    await backend.request_cancel("c1", "alice")
    await backend.save_run(run)
    assert await backend.cancel_requested("c1") == "alice"


async def test_retention_deletes_old_runs_with_their_events(backend: Store) -> None:
    now = datetime.now(UTC)
    await backend.save_run(record("old", now - timedelta(seconds=10), status="succeeded"))
    await backend.append_events("old", [{"seq": 1, "event": "run.started"}])
    await backend.save_run(record("new", now))
    assert await backend.delete_runs_before(now - timedelta(seconds=5)) == 1
    assert await backend.get_run("old") is None and await backend.get_run("new") is not None
    assert await backend.list_events("old") == []


async def test_retention_deletes_only_finished_runs(backend: Store) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    for status in ("queued", "running", "waiting", "succeeded", "failed", "cancelled"):
        await backend.save_run(record(status, old, status=status))
        await backend.append_events(status, [{"seq": 1, "event": "run.started"}])
    assert await backend.delete_runs_before(datetime.now(UTC)) == 3
    kept = (await backend.list_runs(RunQuery())).runs
    assert sorted(r.execution_id for r in kept) == ["queued", "running", "waiting"]
    assert [e["seq"] for e in await backend.list_events("waiting")] == [1]
    assert await backend.list_events("failed") == []


async def test_retention_keeps_a_waiting_run_resumable(backend: Store, tmp_path: Path) -> None:
    settings = load_settings(store=f"sqlite:///{tmp_path / 'unused.db'}")
    doc = {"id": "appr", "nodes": [t("before", "x"),
                                   {"id": "ok", "type": "approval", "config": {"prompt": "?"}},
                                   t("after", "{{ ok.approved }}")],
           "edges": chain("before", "ok", "after")}
    waiting = await execute_workflow_async(doc, {}, execution_id="w1", store=backend,
                                           settings=settings)
    done = await execute_workflow_async({"id": "plain", "nodes": [t("a", 1)]}, {},
                                        execution_id="d1",
                                        store=backend, settings=settings)
    assert (waiting.status, done.status) == ("waiting", "succeeded")
    # Every run is older than this cutoff: only the finished one goes.
    assert await backend.delete_runs_before(datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert await backend.get_run("d1") is None
    resumed = await resume_workflow("w1", {"approved": True}, store=backend, settings=settings)
    assert resumed.status == "succeeded" and resumed.output is True
    assert resumed.node_states["before"].output == "x"


async def test_mongodb_has_no_ttl_index_and_drops_an_old_one(backend: Store) -> None:
    if not isinstance(backend, MongoStore):
        pytest.skip("MongoDB only")
    # An index of an earlier version, which deleted waiting runs by age.
    await backend.db["runs"].create_index([("expires_from", 1)], expireAfterSeconds=60)
    again = MongoStore(backend.url, client=backend.client)
    await again.save_run(record("y", datetime.now(UTC)))  # prepares the indexes once more
    for name in ("runs", "run_events"):
        info = await backend.db[name].index_information()
        assert [i for i in info.values() if "expireAfterSeconds" in i] == []
    runs = await backend.db["runs"].index_information()
    assert any(i["key"][:2] == [("workflow_id", 1), ("created_at", -1)] for i in runs.values())


async def test_another_instance_sees_deletes_and_new_versions(backend: Store) -> None:
    """Two processes on one store: neither answers from what it cached."""
    other: Store = (SqliteStore(backend.path) if isinstance(backend, SqliteStore) else
                    MongoStore(backend.url, client=backend.client))  # type: ignore[attr-defined]
    doc = {"nodes": [t("a", 1)]}
    assert (await backend.put_workflow("wf", doc)).version == 1
    assert (await other.put_workflow("wf", {"nodes": [t("a", 2)]})).version == 2
    again = await backend.put_workflow("wf", doc)  # not the version this instance stored
    assert again.version == 3 and again.document["nodes"][0]["config"]["output"] == 1
    assert await other.delete_workflow("wf") is True
    undeleted = await backend.put_workflow("wf", doc)  # re-storing undeletes it
    assert undeleted.version == 3
    latest = await other.get_workflow("wf")
    assert latest is not None and latest.version == 3
    if isinstance(other, SqliteStore):
        await other.close()


async def test_runs_checkpoint_and_resume_on_the_backend(backend: Store, tmp_path: Path) -> None:
    settings = load_settings(store=f"sqlite:///{tmp_path / 'unused.db'}")
    doc = {"id": "cp", "nodes": [t("a", "{{ inputs.n }}"), t("b", "{{ 10 / inputs.d }}")],
           "edges": chain("a", "b")}
    failed = await execute_workflow_async(doc, {"n": 1, "d": 0}, execution_id="cp1",
                                          store=backend, settings=settings)
    assert failed.status == "failed"
    ok = await execute_workflow_async(doc, {"n": 1, "d": 5}, execution_id="cp2",
                                      store=backend, settings=settings)
    assert ok.status == "succeeded" and ok.output == 2.0
    assert (await backend.get_run("cp2")) == ok
    with pytest.raises(Exception, match="already succeeded"):
        await resume_workflow("cp2", store=backend, settings=settings)
    events = await backend.list_events("cp2")
    assert events[0]["event"] == "run.started" and events[-1]["event"] == "run.finished"


async def test_idempotency_keys_are_claimed_once(backend: Store) -> None:
    assert await backend.claim_idempotency_key("k1", "hash-a", "run-a") is None
    assert await backend.claim_idempotency_key("k1", "hash-b", "run-b") == ("hash-a", "run-a")
    assert await backend.claim_idempotency_key("k2", "hash-b", "run-b") is None


async def test_stale_runs_are_the_unfinished_ones_nobody_updates(backend: Store) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(seconds=30)
    await backend.save_run(record("stuck", old, status="running", updated_at=old))
    await backend.save_run(record("queued", old, status="queued", updated_at=old))
    await backend.save_run(record("alive", old, status="running", updated_at=now))
    await backend.save_run(record("done", old, status="succeeded", updated_at=old))
    stale = await backend.stale_runs(now - timedelta(seconds=10))
    assert sorted(r.execution_id for r in stale) == ["queued", "stuck"]


async def test_descendants_are_the_runs_named_under_a_run(backend: Store) -> None:
    now = datetime.now(UTC)
    for execution_id in ("r", "r.a", "r.b", "r.a.c", "r.a[2].d", "r2", "r2.a", "q.r.a", "r-a",
                         "r/a", "rr.a"):
        await backend.save_run(record(execution_id, now, status="running"))
    assert await backend.count_descendants("r") == 4
    assert await backend.count_descendants("r.a") == 1
    assert await backend.count_descendants("r.b") == 0
    assert await backend.count_descendants("missing") == 0


class _FailsOnce(NodeType):
    """Fails the first time per execution, as a transient fault would."""

    name = "test_fails_once"
    seen: ClassVar[set[str]] = set()

    async def run(self, config: object, ctx: NodeContext[Any]) -> object:
        if ctx.run.execution_id not in self.seen:
            self.seen.add(ctx.run.execution_id)
            raise NodeError("transient fault")
        return "recovered"


async def test_failed_run_resumes_on_the_backend(backend: Store, tmp_path: Path) -> None:
    _FailsOnce.seen.clear()
    register_node_type(_FailsOnce())
    try:
        settings = load_settings(store=f"sqlite:///{tmp_path / 'unused.db'}")
        doc = {"id": "again", "nodes": [t("a", 1), {"id": "b", "type": "test_fails_once"},
                                        t("c", "{{ b }}!")], "edges": chain("a", "b", "c")}
        started: list[str] = []
        failed = await execute_workflow_async(doc, execution_id="rs1", store=backend,
                                              settings=settings)
        assert failed.status == "failed" and failed.node_states["c"].status == "failed"
        done = await resume_workflow("rs1", store=backend, settings=settings,
                                     on_event=lambda e: started.append(e.get("node_id", ""))
                                     if e["event"] == "node.started" else None)
        assert done.status == "succeeded" and done.output == "recovered!"
        assert started == ["b", "c"]  # `a` finished before the failure: not run again
    finally:
        NODE_TYPES.pop("test_fails_once")


async def test_a_stale_run_is_claimed_once(backend: Store) -> None:
    old = datetime.now(UTC) - timedelta(seconds=30)
    await backend.save_run(record("orphan", old, status="running", updated_at=old))
    [seen] = await backend.stale_runs(datetime.now(UTC) - timedelta(seconds=10))
    assert seen.updated_at is not None
    assert await backend.claim_run("orphan", "running", seen.updated_at) is True
    assert await backend.claim_run("orphan", "running", seen.updated_at) is False
    assert await backend.stale_runs(datetime.now(UTC) - timedelta(seconds=10)) == []


async def test_a_queued_run_cancelled_before_its_start_cannot_be_claimed(
        backend: Store) -> None:
    now = datetime.now(UTC)
    queued = record("waits", now, status="queued")
    await backend.save_run(queued)
    await backend.save_run(queued.model_copy(update={"status": "cancelled"}))
    assert await backend.claim_run("waits", "queued", now) is False
    await backend.save_run(record("fresh", now, status="queued"))
    assert await backend.claim_run("fresh", "running", now) is False  # not what was seen
    assert await backend.claim_run("fresh", "queued", now) is True


async def test_a_run_whose_claimer_died_can_be_claimed_again(backend: Store) -> None:
    old = datetime.now(UTC) - timedelta(seconds=30)
    await backend.save_run(record("lost", old, status="queued", updated_at=old))
    [seen] = await backend.stale_runs(datetime.now(UTC) - timedelta(seconds=10))
    assert seen.updated_at is not None
    assert await backend.claim_run("lost", "queued", seen.updated_at) is True
    claimed = await backend.get_run("lost")
    assert claimed is not None and claimed.status == "running"
    assert claimed.updated_at is not None and claimed.updated_at > seen.updated_at
    # Its claimer stopped before writing anything: what is read back can be claimed.
    assert await backend.claim_run("lost", "running", claimed.updated_at) is True
    assert await backend.claim_run("lost", "running", claimed.updated_at) is False


async def test_a_run_claimed_the_instant_it_was_written_is_claimed_once(
        backend: Store) -> None:
    # The process that queued a run claims it at once, often within the same
    # millisecond: the claim must still change the record, so only one claimer wins.
    for n in range(20):
        now = datetime.now(UTC)
        await backend.save_run(record(f"q{n}", now, status="queued"))
        wins = [await backend.claim_run(f"q{n}", "queued", now) for _ in range(2)]
        assert wins == [True, False]


async def test_mongodb_store_errors_hide_the_password() -> None:
    from flowloom.app.api.errors import to_problem
    from flowloom.app.stores.errors import StoreError

    store = MongoStore("mongodb://user:secret@127.0.0.1:1/db?serverSelectionTimeoutMS=200")
    try:
        with pytest.raises(StoreError) as caught:
            await store.get_run("x")
    finally:
        await store.close()
    text = str(caught.value)
    assert text.startswith("cannot prepare the MongoDB store at "
                           "mongodb://user:***@127.0.0.1:1/db?serverSelectionTimeoutMS=***")
    answer = to_problem(caught.value)  # the 503 the API sends
    assert answer.status_code == 503 and b"secret" not in answer.body
    assert "secret" not in text


async def test_mongodb_errors_after_setup_are_store_errors(tmp_path: Path) -> None:
    # A server that goes away mid-run: what the store raises is a StoreError (the run's
    # watcher backs off on it and the API answers 503), never the driver's own error.
    from flowloom.app.stores.errors import StoreError
    from tests.mongo_server import secantus_server

    with secantus_server(tmp_path / "gone.log") as uri:
        store = MongoStore(f"{uri}/db?serverSelectionTimeoutMS=300")
        now = datetime.now(UTC)
        await store.save_run(record("alive", now, status="running"))
        assert await store.get_run("alive") is not None
    try:
        for call in (store.get_run("alive"), store.save_run(record("alive", now)),
                     store.list_events("alive"), store.cancel_requested("alive"),
                     store.stale_runs(now)):
            with pytest.raises(StoreError, match=r"^MongoDB store mongodb://127\.0\.0\.1:"):
                await call
    finally:
        await store.close()


async def test_a_queued_run_with_a_cancel_request_is_never_claimed(backend: Store) -> None:
    now = datetime.now(UTC)
    await backend.save_run(record("asked", now, status="queued"))
    await backend.request_cancel("asked", "alice")
    assert await backend.claim_run("asked", "queued", now) is False
    assert await backend.cancel_requested("asked") == "alice"


async def test_resuming_a_failed_run_on_purpose_clears_a_stale_cancel_request(
        backend: Store) -> None:
    now = datetime.now(UTC)
    await backend.save_run(record("lost-race", now, status="failed"))
    await backend.request_cancel("lost-race", "alice")  # came after the run had failed
    assert await backend.claim_run("lost-race", "failed", now) is True
    assert await backend.cancel_requested("lost-race") is None


async def test_a_conditional_save_loses_to_a_claim(backend: Store) -> None:
    now = datetime.now(UTC)
    queued = record("raced", now, status="queued")
    await backend.save_run(queued)
    assert await backend.claim_run("raced", "queued", now) is True
    cancelled = queued.model_copy(update={"status": "cancelled", "updated_at": now})
    assert await backend.save_run_if(cancelled, "queued", now) is False
    stored = await backend.get_run("raced")
    assert stored is not None and stored.status == "running"
    assert await backend.save_run_if(cancelled, "running", stored.updated_at) is True
    stored = await backend.get_run("raced")
    assert stored is not None and stored.status == "cancelled"


async def test_a_run_is_created_once(backend: Store) -> None:
    now = datetime.now(UTC)
    assert await backend.create_run(record("new", now, status="queued")) is True
    assert await backend.create_run(record("new", now, status="running")) is False
    stored = await backend.get_run("new")
    assert stored is not None and stored.status == "queued"


async def test_a_run_written_by_a_clock_running_ahead_is_claimed_once(backend: Store) -> None:
    # The store reads the time itself (no clock parameter), so "now" cannot be pinned to
    # the instant of the write; a writer whose clock runs ahead gives the same case for
    # sure: now <= seen, and only the bump past `seen` makes the claim change the record.
    ahead = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=500_000)
    await backend.save_run(record("skewed", ahead, status="queued", updated_at=ahead))
    wins = [await backend.claim_run("skewed", "queued", ahead) for _ in range(2)]
    assert wins == [True, False]
    claimed = await backend.get_run("skewed")
    assert claimed is not None and claimed.status == "running"
    assert claimed.updated_at is not None and claimed.updated_at > ahead
    assert await backend.claim_run("skewed", "running", claimed.updated_at) is True
    assert await backend.claim_run("skewed", "running", claimed.updated_at) is False


class DeletesSeen(CommandListener):
    """The delete commands a client sends, by collection (pymongo's command monitoring)."""

    def __init__(self) -> None:
        self.runs: list[int] = []  # how many runs each delete of `runs` names

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name == "delete" and event.command["delete"] == "runs":
            self.runs += [len(d["q"]["_id"]["$in"]) for d in event.command["deletes"]]

    def succeeded(self, event: object) -> None:
        pass

    def failed(self, event: object) -> None:
        pass


async def test_mongodb_retention_deletes_in_bounded_batches(
        backend: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    if not isinstance(backend, MongoStore):
        pytest.skip("MongoDB only (SQLite: test_retention_deletes_in_batches_letting_the_loop_run)")
    from flowloom.app.stores import mongo
    monkeypatch.setattr(mongo, "RETENTION_BATCH", 3)
    seen = DeletesSeen()
    store = MongoStore(backend.url, client=AsyncMongoClient(backend.url, tz_aware=True,
                                                            event_listeners=[seen]))
    try:
        old = datetime.now(UTC) - timedelta(days=400)
        for n in range(8):
            await store.save_run(record(f"old{n}", old, status="succeeded"))
            await store.append_events(f"old{n}", [{"seq": 1, "event": "run.started"}])
        await store.save_run(record("waits", old, status="waiting"))
        assert await store.delete_runs_before(datetime.now(UTC)) == 8
        assert seen.runs == [3, 3, 2]
        assert [r.execution_id for r in (await store.list_runs(RunQuery())).runs] == ["waits"]
        assert await store.list_events("old7") == []
    finally:
        await store.close()
