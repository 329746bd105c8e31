"""Who may take a run over: the one rule the CLI, the Python API, the resume route and
the queue workers apply before they claim a `queued` or `running` run.

A process driving a run writes its record at least every second, a very large record
at least four times per lease (the heartbeat), and every write moves `updated_at`. A
record written within FLOWLOOM_STALE_AFTER_S means a live owner: the run is refused,
naming the owner and how long its lease has left. An older record means its owner is
gone, and the run may be claimed (a compare-and-set on what was read, so of several
takers one wins).
"""

from __future__ import annotations

import os
import socket
from datetime import datetime

from flowloom.app.records import RunRecord, utcnow


def this_process() -> str:
    """How a run's record names the process driving it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_left(record: RunRecord, stale_after_s: float, now: datetime | None = None) -> float:
    """Seconds until the run counts as orphaned; 0 once it does."""
    written = record.updated_at or record.created_at
    return max(0.0, stale_after_s - ((now or utcnow()) - written).total_seconds())


def live_owner(record: RunRecord, stale_after_s: float) -> str | None:
    """Why a queued or running run cannot be taken over now, in one line; None once its
    lease ran out (or the run is in no other state a process holds)."""
    if record.status not in ("queued", "running"):
        return None
    left = lease_left(record, stale_after_s)
    if left <= 0:
        return None
    owner = f" ({record.owner})" if record.owner else ""
    return (f"execution `{record.execution_id}` is {record.status} in a live "
            f"process{owner}: its lease has {left:.1f} s left (it runs out "
            f"FLOWLOOM_STALE_AFTER_S={stale_after_s:g} s after the owner's last write)")
