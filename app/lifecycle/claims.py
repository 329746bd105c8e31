"""Who may drive a run, decided in one place: claims, takeovers, cancels and recovery.

Ownership is a lease. A process driving a run writes its record at least every second,
a very large record at least four times per lease (the heartbeat, live.py), and every
write moves `updated_at`: that value is the fencing token each of its writes is checked
against. A record written within FLOWLOOM_STALE_AFTER_S means a live owner: a takeover
is refused, naming the owner and how long its lease has left. An older record means its
owner is gone, and the run may be claimed: a compare-and-set on what was read, so of
several takers exactly one wins, and the loser's writes are refused from then on.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from flowloom.app.records import RunRecord, mark_cancelled, utcnow
from flowloom.app.stores.base import Store
from flowloom.graphs.errors import WorkflowError


class NotResumable(WorkflowError):
    """The run is finished, running elsewhere, or cannot take the given answer."""


class RunNotFound(WorkflowError):
    """No run has the given execution id."""


def this_process() -> str:
    """How a run's record names the process driving it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_left(record: RunRecord, stale_after_s: float, now: datetime | None = None) -> float:
    """Seconds until the run counts as orphaned; 0 once it does."""
    written = record.updated_at or record.created_at
    return max(0.0, stale_after_s - ((now or utcnow()) - written).total_seconds())


def live_owner(record: RunRecord, stale_after_s: float,
               now: datetime | None = None) -> str | None:
    """Why a queued or running run cannot be taken over now, in one line; None once its
    lease ran out (or the run is in no other state a process holds)."""
    if record.status not in ("queued", "running"):
        return None
    left = lease_left(record, stale_after_s, now)
    if left <= 0:
        return None
    owner = f" ({record.owner})" if record.owner else ""
    return (f"execution `{record.execution_id}` is {record.status} in a live "
            f"process{owner}: its lease has {left:.1f} s left (it runs out "
            f"FLOWLOOM_STALE_AFTER_S={stale_after_s:g} s after the owner's last write)")


_DRIVEN_HERE: set[str] = set()  # runs this process is executing right now


@contextmanager
def driving(execution_id: str) -> Iterator[None]:
    """While this process drives the run: no resume from here takes it over."""
    _DRIVEN_HERE.add(execution_id)
    try:
        yield
    finally:
        _DRIVEN_HERE.discard(execution_id)


def _seen(record: RunRecord) -> datetime:
    return record.updated_at or record.created_at


async def claim_for_start(store: Store, record: RunRecord) -> bool:
    """Take a queued run to start it; False when another process took it or it was
    cancelled meanwhile (a cancel asked for before the claim wins)."""
    return await store.claim_run(record.execution_id, "queued", _seen(record))


async def claim_seen(store: Store, execution_id: str, seen: tuple[str, datetime]) -> bool:
    """Take over a run a recoverer saw stale, as (status, updated_at); False when anyone
    wrote it since."""
    return await store.claim_run(execution_id, *seen)


async def claim_found(store: Store, record: RunRecord, stale_after_s: float) -> str | None:
    """A queue worker's claim of a run it was sent (to start, or orphaned to continue):
    None once claimed, else why it was left alone."""
    if record.finished or record.status == "waiting":
        return "nothing to do"
    if record.status == "running" and live_owner(record, stale_after_s):
        return "running in a live process"  # its heartbeat is fresh: not orphaned
    if not await store.claim_run(record.execution_id, record.status, _seen(record)):
        return "taken by another worker, or cancelled"
    return None


async def resumable(store: Store, execution_id: str) -> RunRecord:
    """The run to resume; RunNotFound, or NotResumable for a run that finished for good."""
    record = await store.get_run(execution_id)
    if record is None:
        raise RunNotFound(f"no run with execution id `{execution_id}`")
    if record.status in ("succeeded", "cancelled"):
        raise NotResumable(f"execution `{execution_id}` already {record.status}; "
                           "nothing to resume")
    return record


async def claim_for_resume(store: Store, record: RunRecord, *, stale_after_s: float,
                           take_over: bool, force: bool) -> bool:
    """Claim a run to resume it, or raise NotResumable saying why not. A `running` run
    that this process is not executing is taken over once its lease ran out (`force`:
    at once; the caller claimed it, or knows its process is gone); `take_over=False`
    refuses every running run. Returns True when the run was cancelled instead: a cancel
    of it or of an ancestor run was asked for while no process drove it (its children
    are cancelled with it); the record is then cancelled and stored."""
    execution_id = record.execution_id
    if record.status == "running" and (execution_id in _DRIVEN_HERE or not take_over):
        raise NotResumable(f"execution `{execution_id}` is running; if its process "
                           "stops, it can be resumed then")
    refusal = live_owner(record, stale_after_s)
    if record.status == "running" and not force and refusal:
        raise NotResumable(f"{refusal}; resume it then, or with --force (force=True) "
                           "if you know that process is gone")
    was = record.status
    if not await store.claim_run(execution_id, was, _seen(record)):
        raise NotResumable(f"execution `{execution_id}` was resumed or changed by "
                           "another request meanwhile; read it again")
    # An orphan: cancelled, or its parent was, while no process drove it. (A failed or
    # waiting run resumed on purpose had an old request cleared by the claim.)
    by = await _cancelled_by(store, execution_id) if was == "running" else None
    if by is None:
        return False
    mark_cancelled(record, by)
    await store.save_run(record)  # ours: just claimed
    await _cancel_children(store, record, by)
    return True


async def _cancelled_by(store: Store, run_id: str | None) -> str | None:
    """Who asked to cancel this run or its nearest ancestor that was asked, if anyone."""
    for _ in range(64):  # a chain of parents is short (MAX_SUBWORKFLOW_DEPTH)
        if run_id is None:
            return None
        by = await store.cancel_requested(run_id)
        if by is not None:
            return by
        parent = await store.get_run(run_id)
        run_id = parent.parent_execution_id if parent else None
    return None


async def cancel_run(store: Store, execution_id: str, by: str) -> RunRecord:
    """Cancel a queued, running or waiting run. A run going in some process stops at its
    next check (within a second); a queued or waiting one is cancelled here and now, and
    so are its unfinished child runs. An orphaned one is cancelled by whoever claims it
    next (recovery), its children with it."""
    record = await store.get_run(execution_id)
    if record is None:
        raise RunNotFound(f"no run with execution id `{execution_id}`")
    if record.finished:
        raise NotResumable(f"execution `{execution_id}` already {record.status}")
    # The request first: a process that claims the run from here on sees it (a queued
    # run is then never started; a running one stops at its next check).
    await store.request_cancel(execution_id, by)
    while record.status in ("queued", "waiting"):
        seen = (record.status, _seen(record))
        mark_cancelled(record, by)
        if await store.save_run_if(record, *seen):
            await _cancel_children(store, record, by)
            return record
        # Claimed meanwhile (an answer resumed it): ask its new owner to stop.
        fresh = await store.get_run(execution_id)
        if fresh is None or fresh.finished:
            return fresh or record
        record = fresh
        await store.request_cancel(execution_id, by)
    return record


async def _cancel_children(store: Store, record: RunRecord, by: str) -> None:
    """The unfinished child runs a cancelled run's record names: cancelled by a
    compare-and-set, or, if one is being driven, asked to stop."""
    for state in record.node_states.values():
        child_id = state.child_execution_id
        child = await store.get_run(child_id) if child_id else None
        if child is None or child.finished:
            continue
        seen = (child.status, _seen(child))
        await store.request_cancel(child.execution_id, by)
        mark_cancelled(child, by)
        if await store.save_run_if(child, *seen):
            await _cancel_children(store, child, by)


async def cancel_child(store: Store, child_id: str, parent_execution_id: str) -> None:
    """A child run whose drive stopped without a word when its parent's did (cancelled,
    timed out): cancel its record, so no child is left `running`. Its own children
    cancelled theirs first."""
    child = await store.get_run(child_id)
    if child is not None and not child.finished:
        by = await _cancelled_by(store, parent_execution_id)
        mark_cancelled(child, f"parent {parent_execution_id}" if by is None else by)
        await store.request_cancel(child_id, child.cancelled_by or "")
        await store.save_run(child)  # its drive, in this process, stopped


async def cancel_asked(store: Store, execution_id: str) -> str | None:
    """Who asked to cancel this run, if anyone did (the heartbeat asks every beat)."""
    return await store.cancel_requested(execution_id)


async def recoverable_runs(store: Store, stale_after_s: float) -> list[RunRecord]:
    """Queued or running runs whose owner's lease ran out: their process stopped (or a
    queued run's process is too busy to start it). Each must still be claimed.

    A child run is its parent's to resume: the parent's `subworkflow` node takes it over
    when the parent is resumed, and recovering both would drive the child twice. A child
    whose parent has finished (or is gone) is never resumed: it is cancelled here, as its
    parent's end would have done had its process lived to say so."""
    chosen = []
    for record in await store.stale_runs(utcnow() - timedelta(seconds=stale_after_s)):
        parent_id = record.parent_execution_id
        if parent_id is None:
            chosen.append(record)
            continue
        parent = await store.get_run(parent_id)
        if parent is not None and not parent.finished:
            continue  # left to the parent's own recovery
        why = (f"parent {parent_id} {parent.status}" if parent is not None
               else f"parent {parent_id} gone")
        seen = (record.status, _seen(record))
        mark_cancelled(record, why)
        if await store.save_run_if(record, *seen):  # a claim since wins: it was resumed
            await store.request_cancel(record.execution_id, why)
    return chosen
