"""A run's lifecycle, owned here alone: claim, heartbeat, finish, cancel, resume and
recovery. The CLI, the Python API, the HTTP service, the pool and the queue workers all
go through these functions; none of them calls the store's claim, cancel or heartbeat
primitives itself (tests/test_layering.py checks), so the rules cannot drift apart.

    claims.py  who may drive a run: claims, takeovers, cancels (to the child runs),
               the runs to recover
    live.py    the owner's side: its lease, heartbeat, cancel watch and last write
"""

from flowloom.app.lifecycle.claims import (
    NotResumable,
    RunNotFound,
    cancel_child,
    cancel_run,
    claim_for_resume,
    claim_for_start,
    claim_found,
    claim_seen,
    driving,
    lease_left,
    live_owner,
    recoverable_runs,
    resumable,
    this_process,
)
from flowloom.app.lifecycle.live import EventCallback, LiveRecord, take_lease

__all__ = [
    "EventCallback",
    "LiveRecord",
    "NotResumable",
    "RunNotFound",
    "cancel_child",
    "cancel_run",
    "claim_for_resume",
    "claim_for_start",
    "claim_found",
    "claim_seen",
    "driving",
    "lease_left",
    "live_owner",
    "recoverable_runs",
    "resumable",
    "take_lease",
    "this_process",
]
