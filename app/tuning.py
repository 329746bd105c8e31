"""Process tuning: the CLI's start-up, runs in flight, and long-lived services (the API
and queue workers)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Second-generation collections per full one while runs go (Python's default is 10).
FULL_EVERY = 100
_pacing = threading.Lock()
_runs_paced = 0
_thresholds: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None  # before, set


def freeze_startup_heap() -> None:
    """Move everything allocated so far (modules, LangChain and pydantic machinery, the
    app itself) out of the cyclic collector's reach. Those objects live as long as the
    process, yet a full collection walked all of them: each took ~75 ms and stalled every
    request in flight, which was the service's p99. Frozen, a full collection takes ~3 ms.
    """
    gc.enable()  # the CLI holds collection while it starts (hold_collection)
    gc.collect()  # what is garbage now should not be frozen with the rest
    gc.freeze()


def hold_collection() -> None:
    """At a command's start: importing LangGraph, LangChain and pydantic makes ~10^5
    container objects that live to the end, and collecting as they come walked them
    again and again (~0.15 s of a `flowloom run`). `collect_from_here` ends the hold."""
    gc.disable()


def collect_from_here() -> None:
    """Once a command has loaded what it runs with: freeze what start-up made, as
    `freeze_startup_heap` does but without a full collection first (a short command
    frees little), and collect from here on."""
    gc.freeze()
    gc.enable()


@contextmanager
def paced_collection() -> Iterator[None]:
    """Around a run: full collections at most a tenth as often while any run goes.

    A run's tasks (a foreach has up to a chunk's 512 items in flight) outlive two young
    collections, so they reach the old generation, then die together; with Python's
    default pacing that churn set off a full collection every ~800 items, each walking
    the whole heap (the process's modules, the run's record, which grows with the
    items): a third of a 10,000-item foreach's CPU, and growing faster than the items.
    Cyclic garbage is still found by the young collections; only what reached the old
    generation waits longer. Thresholds a caller set meanwhile are left as they are."""
    global _runs_paced, _thresholds
    with _pacing:
        if _runs_paced == 0:
            before = gc.get_threshold()
            paced = (before[0], before[1], max(before[2], FULL_EVERY))
            gc.set_threshold(*paced)
            _thresholds = (before, paced)
        _runs_paced += 1
    try:
        yield
    finally:
        with _pacing:
            _runs_paced -= 1
            if _runs_paced == 0 and _thresholds is not None:
                before, paced = _thresholds
                if gc.get_threshold() == paced:
                    gc.set_threshold(*before)
                _thresholds = None


def thaw_heap() -> None:
    """At shutdown: a process that embeds the app (tests, a notebook) gets it all back."""
    gc.unfreeze()
