"""An owner's hold on one run: the fencing token that every write of that run checks.

The token is the run's stored `updated_at`. The owner moves it with each write of the
record (a heartbeat at least every second); a claim by another process moves it too.
A write of the record, its events or its checkpoints lands only while the stored value
is one this owner wrote; the first write refused loses the lease for good, and the
owner stops.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowloom.app.stores.errors import LeaseLost

LEASE_KEY = "__flowloom_lease"  # in a run's `configurable`: every checkpoint write sees it


class Lease:
    __slots__ = ("bound", "epoch", "execution_id", "free", "lost", "tokens")

    def __init__(self, execution_id: str, token: datetime | None = None) -> None:
        self.execution_id = execution_id
        # The values of `updated_at` this owner may have left: the last one written, and
        # those of writes whose outcome it has not heard (in flight, or failed in a way
        # that may have landed). Replaced as a whole, so another thread reads one set.
        self.tokens: tuple[datetime, ...] = (token,) if token is not None else ()
        self.lost = False
        # MongoDB's checkpoint fence (mongo_saver.py): the run's claim count when this
        # owner took it, learnt with its first checkpoint read or write.
        self.bound = False
        self.epoch: int | None = None
        self.free: list[int] = []  # slots handed to this owner, not yet written

    @property
    def held(self) -> bool:
        """Fenced: this owner knows a token (a run being created has none yet)."""
        return bool(self.tokens)

    @property
    def latest(self) -> datetime | None:
        return max(self.tokens) if self.tokens else None

    def moving_to(self, token: datetime) -> tuple[datetime, ...]:
        """A write moving `updated_at` to `token` is on its way; returns the tokens it is
        fenced on. Until it is heard of, either value is this owner's."""
        before = self.tokens
        if before:
            self.tokens = (*before, token)
        return before

    def moved_to(self, token: datetime) -> None:
        self.tokens = (token,)

    def refused(self) -> LeaseLost:
        """The error of a write that found the run written by someone else."""
        self.lost = True
        return LeaseLost(f"run {self.execution_id} was taken over by another process")


def lease_of(config: Mapping[str, Any]) -> Lease | None:
    """The lease a checkpoint write is fenced on; None for a graph run outside an owner."""
    lease = config.get("configurable", {}).get(LEASE_KEY)
    return lease if isinstance(lease, Lease) and lease.held else None
