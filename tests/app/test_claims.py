"""Run ownership decided in app/lifecycle/claims.py, called directly on a real SQLite
store: the lease, the live-owner refusal, a queue worker's claim, resume's claim and
which runs recovery picks. (Cancels and their cascade: test_cancels.py.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from flowloom.app.lifecycle import claims
from flowloom.app.lifecycle.claims import (
    NotResumable,
    RunNotFound,
    claim_for_resume,
    claim_found,
    lease_left,
    live_owner,
    recoverable_runs,
    resumable,
)
from flowloom.app.records import RunRecord, utcnow
from flowloom.app.stores.sqlite import SqliteStore

WRITTEN = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def record(execution_id: str, status: str, *, ago_s: float = 60.0,
           parent: str | None = None, owner: str | None = None) -> RunRecord:
    """A run last written `ago_s` seconds ago (negative: that far in the future)."""
    at = utcnow() - timedelta(seconds=ago_s)
    return RunRecord(execution_id=execution_id, workflow_id="w", workflow_version=1,
                     status=status, created_at=at, updated_at=at,  # type: ignore[arg-type]
                     parent_execution_id=parent, owner=owner)


async def stored(store: SqliteStore, execution_id: str, status: str, **kwargs: object
                 ) -> RunRecord:
    run = record(execution_id, status, **kwargs)  # type: ignore[arg-type]
    await store.save_run(run)
    return run


def test_lease_left_counts_down_from_the_last_write() -> None:
    run = RunRecord(execution_id="r", status="running", created_at=WRITTEN, updated_at=WRITTEN)
    assert lease_left(run, 10.0, now=WRITTEN + timedelta(seconds=4)) == 6.0
    assert lease_left(run, 10.0, now=WRITTEN + timedelta(seconds=10)) == 0.0
    assert lease_left(run, 10.0, now=WRITTEN + timedelta(seconds=60)) == 0.0


def test_a_live_owner_is_named_with_the_lease_it_has_left() -> None:
    for status in ("queued", "running"):
        refusal = live_owner(record("r", status, ago_s=0.0, owner="host:42"), 100.0)
        assert refusal is not None
        shown = re.fullmatch(
            rf"execution `r` is {status} in a live process \(host:42\): its lease has "
            r"(\d+\.\d) s left \(it runs out FLOWLOOM_STALE_AFTER_S=100 s after the "
            r"owner's last write\)", refusal)
        assert shown is not None, refusal
        assert 0 < float(shown.group(1)) <= 100
    ownerless = live_owner(record("r", "running", ago_s=0.0), 100.0)
    assert ownerless is not None
    assert ownerless.startswith("execution `r` is running in a live process: its lease has ")


def test_no_live_owner_once_the_lease_ran_out_or_no_process_holds_the_run() -> None:
    assert live_owner(record("r", "running", ago_s=60.0, owner="host:42"), 10.0) is None
    assert live_owner(record("r", "queued", ago_s=60.0), 10.0) is None
    for status in ("waiting", "failed", "succeeded", "cancelled"):
        assert live_owner(record("r", status, ago_s=0.0, owner="host:42"), 100.0) is None


def test_a_lease_with_under_a_second_left_still_has_a_live_owner() -> None:
    run = record("r", "running")
    run.updated_at = WRITTEN
    half_a_second_later = WRITTEN + timedelta(seconds=0.5)
    assert live_owner(run, 1.0, now=half_a_second_later) == (
        "execution `r` is running in a live process: its lease has 0.5 s left (it runs "
        "out FLOWLOOM_STALE_AFTER_S=1 s after the owner's last write)")
    assert live_owner(run, 1.0, now=WRITTEN + timedelta(seconds=1)) is None


async def test_a_queue_worker_leaves_finished_and_waiting_runs_alone(store: SqliteStore
                                                                     ) -> None:
    for status in ("succeeded", "failed", "cancelled", "waiting"):
        run = await stored(store, status, status)
        assert await claim_found(store, run, 10.0) == "nothing to do"
        after = await store.get_run(status)
        assert after is not None and (after.status, after.updated_at) == (status,
                                                                           run.updated_at)


async def test_a_queue_worker_leaves_a_run_with_a_fresh_heartbeat_alone(store: SqliteStore
                                                                         ) -> None:
    run = await stored(store, "live", "running", ago_s=0.0)
    assert await claim_found(store, run, 100.0) == "running in a live process"
    after = await store.get_run("live")
    assert after is not None and after.updated_at == run.updated_at


async def test_a_queue_worker_claims_a_queued_run_and_an_orphan(store: SqliteStore) -> None:
    queued = await stored(store, "new", "queued", ago_s=0.0)  # just queued: claimed at once
    orphan = await stored(store, "orphan", "running", ago_s=60.0)
    assert await claim_found(store, queued, 100.0) is None
    assert await claim_found(store, orphan, 10.0) is None
    for run in (queued, orphan):
        after = await store.get_run(run.execution_id)
        assert after is not None and after.status == "running"
        assert after.updated_at is not None and after.updated_at > run.updated_at  # type: ignore[operator]


async def test_a_queue_worker_that_loses_the_claim_says_so(store: SqliteStore) -> None:
    orphan = await stored(store, "orphan", "running", ago_s=60.0)
    assert await store.claim_run("orphan", "running", orphan.updated_at)  # type: ignore[arg-type]
    assert await claim_found(store, orphan, 10.0) == "taken by another worker, or cancelled"
    queued = await stored(store, "asked", "queued")
    await store.request_cancel("asked", "alice")
    assert await claim_found(store, queued, 10.0) == "taken by another worker, or cancelled"
    after = await store.get_run("asked")
    assert after is not None and after.status == "queued"


async def test_resumable_refuses_missing_and_finished_runs(store: SqliteStore) -> None:
    with pytest.raises(RunNotFound) as missing:
        await resumable(store, "nope")
    assert str(missing.value) == "no run with execution id `nope`"
    for status in ("succeeded", "cancelled"):
        await stored(store, status, status)
        with pytest.raises(NotResumable) as done:
            await resumable(store, status)
        assert str(done.value) == f"execution `{status}` already {status}; nothing to resume"
    for status in ("failed", "waiting", "running", "queued"):
        await stored(store, status, status)
        assert (await resumable(store, status)).status == status


async def test_without_take_over_a_running_run_is_refused_even_if_orphaned(
        store: SqliteStore) -> None:
    run = await stored(store, "r", "running", ago_s=60.0)
    with pytest.raises(NotResumable) as refused:
        await claim_for_resume(store, run, stale_after_s=10.0, take_over=False, force=True)
    assert str(refused.value) == ("execution `r` is running; if its process stops, it can "
                                  "be resumed then")
    after = await store.get_run("r")
    assert after is not None and after.updated_at == run.updated_at


async def test_a_run_this_process_drives_is_never_taken_over(store: SqliteStore) -> None:
    run = await stored(store, "r", "running", ago_s=60.0)
    with claims.driving("r"), pytest.raises(NotResumable, match="is running; if its process"):
        await claim_for_resume(store, run, stale_after_s=10.0, take_over=True, force=True)
    assert await claim_for_resume(store, run, stale_after_s=10.0, take_over=True,
                                  force=True) is False  # once no longer driven here


async def test_a_failed_run_is_claimed_without_take_over(store: SqliteStore) -> None:
    run = await stored(store, "r", "failed", ago_s=0.0)
    assert await claim_for_resume(store, run, stale_after_s=100.0, take_over=False,
                                  force=False) is False
    after = await store.get_run("r")
    assert after is not None and after.status == "running"


async def test_a_live_owner_refuses_a_takeover_unless_forced(store: SqliteStore) -> None:
    run = await stored(store, "r", "running", ago_s=0.0, owner="host:42")
    with pytest.raises(NotResumable) as refused:
        await claim_for_resume(store, run, stale_after_s=100.0, take_over=True, force=False)
    shown = re.fullmatch(
        r"execution `r` is running in a live process \(host:42\): its lease has \d+\.\d s "
        r"left \(it runs out FLOWLOOM_STALE_AFTER_S=100 s after the owner's last write\); "
        r"resume it then, or with --force \(force=True\) if you know that process is gone",
        str(refused.value))
    assert shown is not None, str(refused.value)
    assert await claim_for_resume(store, run, stale_after_s=100.0, take_over=True,
                                  force=True) is False
    after = await store.get_run("r")
    assert after is not None and after.status == "running"
    assert after.updated_at is not None and after.updated_at > run.updated_at  # type: ignore[operator]


async def test_a_resume_that_lost_the_claim_says_read_it_again(store: SqliteStore) -> None:
    run = await stored(store, "r", "running", ago_s=60.0)
    assert await store.claim_run("r", "running", run.updated_at)  # type: ignore[arg-type]
    with pytest.raises(NotResumable) as lost:
        await claim_for_resume(store, run, stale_after_s=10.0, take_over=True, force=False)
    assert str(lost.value) == ("execution `r` was resumed or changed by another request "
                               "meanwhile; read it again")


async def test_a_failed_child_resumed_on_purpose_runs_though_its_parent_was_asked_to_stop(
        store: SqliteStore) -> None:
    """Only a running orphan is cancelled for a request of its ancestors."""
    await stored(store, "p", "running")
    await store.request_cancel("p", "alice")
    child = await stored(store, "p.sub", "failed", parent="p")
    assert await claim_for_resume(store, child, stale_after_s=10.0, take_over=True,
                                  force=False) is False
    after = await store.get_run("p.sub")
    assert after is not None and (after.status, after.cancelled_by) == ("running", None)


async def test_an_orphan_whose_parent_is_gone_is_claimed_not_cancelled(store: SqliteStore
                                                                        ) -> None:
    child = await stored(store, "gone.sub", "running", parent="gone")
    assert await claim_for_resume(store, child, stale_after_s=10.0, take_over=True,
                                  force=False) is False
    after = await store.get_run("gone.sub")
    assert after is not None and after.status == "running"


async def test_an_ancestors_cancel_is_looked_for_64_runs_up_and_no_further(
        store: SqliteStore) -> None:
    """The walk up the parents is bounded: the run itself and 63 ancestors."""
    ids = [f"r{depth}" for depth in range(66)]  # r0 is the leaf, r65 the root
    for depth, run_id in enumerate(ids):
        await stored(store, run_id, "running", parent=ids[depth + 1] if depth < 65 else None)
    await store.request_cancel("r64", "alice")  # the 65th run up from r0
    leaf = await store.get_run("r0")
    assert leaf is not None
    assert await claim_for_resume(store, leaf, stale_after_s=10.0, take_over=True,
                                  force=False) is False
    await store.request_cancel("r63", "bob")  # the 64th
    near = await store.get_run("r1")
    assert near is not None
    assert await claim_for_resume(store, near, stale_after_s=10.0, take_over=True,
                                  force=False) is True
    after = await store.get_run("r1")
    assert after is not None and (after.status, after.cancelled_by) == ("cancelled", "bob")


async def test_recovery_picks_runs_whose_lease_ran_out_oldest_first(store: SqliteStore
                                                                     ) -> None:
    await stored(store, "later", "running", ago_s=120.0)
    await stored(store, "first", "queued", ago_s=300.0)
    await stored(store, "fresh", "running", ago_s=0.0)  # its owner wrote just now
    await stored(store, "fresh-queued", "queued", ago_s=0.0)
    await stored(store, "waits", "waiting", ago_s=300.0)
    chosen = await recoverable_runs(store, 60.0)
    assert [run.execution_id for run in chosen] == ["first", "later"]
