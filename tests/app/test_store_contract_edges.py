"""The store contract at its edges, on every backend (the `backend` fixture): pages that
end exactly full, fences of several tokens, claims given times in other zones or naive,
what a conditional save leaves for filters and claims, and what retention frees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from flowloom.app.records import RunError, RunRecord
from flowloom.app.stores.base import RunQuery, Store
from flowloom.app.stores.errors import LeaseLost
from tests.conftest import t


def record(execution_id: str, at: datetime, **fields: object) -> RunRecord:
    return RunRecord(execution_id=execution_id, created_at=at, **fields)  # type: ignore[arg-type]


async def test_an_error_search_takes_a_backslash_as_itself(backend: Store) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    for i, message in enumerate(["path C:\\temp\\x missing", "path C:temp missing"]):
        await backend.save_run(record(f"b{i}", base + timedelta(minutes=i), status="failed",
                                      errors=[RunError(node_id="n", type="E", message=message)]))
    found = await backend.list_runs(RunQuery(error="C:\\temp"))
    assert [r.execution_id for r in found.runs] == ["b0"]


async def test_workflows_are_listed_fifty_at_a_time_by_default(backend: Store) -> None:
    for n in range(51):
        await backend.put_workflow(f"wf{n:02d}", {"nodes": [t("a", n)]})
    listed = await backend.list_workflows()
    assert [w.id for w in listed] == [f"wf{n:02d}" for n in range(50)]
    assert [w.id for w in await backend.list_workflows(offset=50)] == ["wf50"]


async def test_a_page_that_ends_exactly_full_has_no_next_cursor(backend: Store) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    for i in range(3):
        await backend.save_run(record(f"p{i}", base + timedelta(minutes=i), status="succeeded"))
    page = await backend.list_runs(RunQuery(limit=3))
    assert [r.execution_id for r in page.runs] == ["p2", "p1", "p0"]
    assert page.next_cursor is None


async def test_a_fenced_save_matches_any_of_its_tokens(backend: Store) -> None:
    first = datetime.now(UTC) - timedelta(seconds=20)
    second = first + timedelta(seconds=10)
    run = record("fenced", first, status="running", updated_at=second)
    await backend.save_run(run)
    run.output = "kept"
    await backend.save_run_with_events(run, [{"seq": 1, "event": "node.started"}],
                                       fence=[first, second])
    stored = await backend.get_run("fenced")
    assert stored is not None and stored.output == "kept"
    assert [e["seq"] for e in await backend.list_events("fenced")] == [1]
    run.output = "lost"
    with pytest.raises(LeaseLost) as lost:
        await backend.save_run_with_events(run, [{"seq": 2, "event": "node.started"}],
                                           fence=[first, first - timedelta(seconds=5)])
    assert str(lost.value) == "run fenced was taken over by another process"
    stored = await backend.get_run("fenced")
    assert stored is not None and stored.output == "kept"
    assert [e["seq"] for e in await backend.list_events("fenced")] == [1]


async def test_a_missing_run_has_no_cancel_request(backend: Store) -> None:
    assert await backend.cancel_requested("nobody") is None


async def test_a_claim_reads_a_time_in_another_zone_as_the_same_instant(backend: Store) -> None:
    ahead = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=500_000)
    await backend.save_run(record("zoned", ahead, status="queued", updated_at=ahead))
    seen = ahead.astimezone(timezone(timedelta(hours=-5)))  # the same instant, 5 h behind
    assert await backend.claim_run("zoned", "queued", seen) is True
    claimed = await backend.get_run("zoned")
    assert claimed is not None and claimed.updated_at is not None
    assert claimed.updated_at > ahead  # later than what was seen, not than its wall time


async def test_a_claim_reads_a_naive_time_as_utc(backend: Store) -> None:
    ahead = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=500_000)
    await backend.save_run(record("naive", ahead, status="queued", updated_at=ahead))
    assert await backend.claim_run("naive", "queued", ahead.replace(tzinfo=None)) is True
    claimed = await backend.get_run("naive")
    assert claimed is not None and claimed.updated_at is not None
    assert claimed.updated_at > ahead


async def test_a_conditionally_saved_run_is_found_by_status_and_claimed_again(
        backend: Store) -> None:
    old = datetime.now(UTC) - timedelta(minutes=5)
    later = old + timedelta(minutes=1)
    run = record("cond", old, status="running", updated_at=old)
    await backend.save_run(run)
    failed = run.model_copy(update={"status": "failed", "updated_at": later})
    assert await backend.save_run_if(failed, "running", old) is True
    by_status = await backend.list_runs(RunQuery(status="failed"))
    assert [r.execution_id for r in by_status.runs] == ["cond"]
    assert (await backend.list_runs(RunQuery(status="running"))).runs == []
    assert await backend.claim_run("cond", "failed", later) is True


async def test_retention_frees_the_idempotency_keys_of_the_runs_it_deletes(
        backend: Store) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    await backend.save_run(record("gone", old, status="succeeded"))
    await backend.save_run(record("stays", old, status="waiting"))
    assert await backend.claim_idempotency_key("k-gone", "h1", "gone") is None
    assert await backend.claim_idempotency_key("k-stays", "h2", "stays") is None
    assert await backend.delete_runs_before(datetime.now(UTC)) == 1
    assert await backend.claim_idempotency_key("k-gone", "h3", "again") is None
    assert await backend.claim_idempotency_key("k-stays", "h4", "other") == ("h2", "stays")


async def test_a_workflow_takes_the_version_its_document_names(backend: Store) -> None:
    stored = await backend.put_workflow("named", {"nodes": [t("a", 1)], "version": 5})
    assert stored.version == 5 and stored.document["version"] == 5
    latest = await backend.get_workflow("named")
    assert latest is not None and latest.version == 5
    bumped = await backend.put_workflow("named", {"nodes": [t("a", 2)], "version": 2})
    assert bumped.version == 6  # never below the next version


async def test_a_workflow_reads_back_with_the_utc_time_it_was_stored_at(backend: Store
                                                                        ) -> None:
    stored = await backend.put_workflow("wf", {"nodes": [t("a", 1)]})
    assert stored.created_at.utcoffset() == timedelta(0)
    again = await backend.get_workflow("wf")
    assert again is not None and again.created_at == stored.created_at
