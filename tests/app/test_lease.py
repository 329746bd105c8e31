"""The fencing token an owner carries: which values of `updated_at` are its own."""

from __future__ import annotations

from datetime import UTC, datetime

from flowloom.app.stores.errors import LeaseLost
from flowloom.app.stores.lease import LEASE_KEY, Lease, lease_of

T1 = datetime(2026, 1, 1, 12, 0, 0, 1, tzinfo=UTC)
T2 = datetime(2026, 1, 1, 12, 0, 0, 2, tzinfo=UTC)
T3 = datetime(2026, 1, 1, 12, 0, 0, 3, tzinfo=UTC)


def test_a_lease_without_a_token_is_not_held_and_fences_nothing() -> None:
    lease = Lease("run-1")
    assert (lease.tokens, lease.held, lease.latest) == ((), False, None)
    assert lease_of({"configurable": {LEASE_KEY: lease}}) is None  # a run being created


def test_a_new_lease_is_neither_lost_nor_bound_to_an_epoch() -> None:
    lease = Lease("run-1", T1)
    assert (lease.tokens, lease.held, lease.latest) == ((T1,), True, T1)
    assert lease.lost is False
    assert (lease.bound, lease.epoch, lease.free) == (False, None, [])


def test_a_write_in_flight_leaves_both_values_the_owners() -> None:
    lease = Lease("run-1", T1)
    assert lease.moving_to(T2) == (T1,)  # the write is fenced on what was stored
    assert lease.tokens == (T1, T2)  # until it is heard of, either may be stored
    assert lease.moving_to(T3) == (T1, T2)  # a second one, the first still unheard of
    assert (lease.tokens, lease.latest) == ((T1, T2, T3), T3)
    lease.moved_to(T3)
    assert lease.tokens == (T3,)


def test_a_lease_not_yet_held_stays_unheld_while_its_first_write_goes() -> None:
    lease = Lease("run-1")
    assert lease.moving_to(T1) == ()
    assert lease.tokens == ()
    lease.moved_to(T1)
    assert lease.tokens == (T1,)


def test_a_refused_write_loses_the_lease_for_good() -> None:
    lease = Lease("run-7", T1)
    error = lease.refused()
    assert isinstance(error, LeaseLost)
    assert str(error) == "run run-7 was taken over by another process"
    assert lease.lost is True


def test_only_a_held_lease_in_the_runs_config_fences_a_write() -> None:
    held = Lease("run-1", T1)
    assert lease_of({"configurable": {LEASE_KEY: held}}) is held
    assert lease_of({}) is None  # a graph run outside an owner: no configurable at all
    assert lease_of({"configurable": {}}) is None
    assert lease_of({"configurable": {LEASE_KEY: "not a lease"}}) is None
