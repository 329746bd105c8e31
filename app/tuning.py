"""Process tuning: the CLI's start-up, runs in flight, and long-lived services (the API
and queue workers)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# While runs go: young collections per middle one, and middle ones per full one
# (Python's defaults: 10 and 10).
MIDDLE_EVERY = 1000
FULL_EVERY = 10
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
    """Around a run: while any run goes, the middle generation is collected every
    1,000 young collections instead of 10 (so full ones come a hundred times less often
    than Python's pacing, ten times less than this module's before).

    A run's tasks (a foreach has up to a chunk's 512 items in flight, a few hundred
    objects each) outlive a young collection or two, and die by reference counting
    soon after. With Python's pacing every tenth young collection walked them again and
    moved them to the old generation, whose growth set off full collections, each
    walking the whole heap (the run's record grows with its items): a fifth of a
    100,000-item foreach's CPU, and growing faster than the items. Now what survives a
    young collection mostly dies before a middle one looks at it. Cyclic garbage of
    young objects is still found at once; what outlives a young collection waits
    longer. Thresholds a caller set meanwhile are left as they are; higher ones are
    kept."""
    global _runs_paced, _thresholds
    with _pacing:
        if _runs_paced == 0:
            before = gc.get_threshold()
            paced = (before[0], max(before[1], MIDDLE_EVERY), max(before[2], FULL_EVERY))
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
