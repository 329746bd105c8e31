"""Process tuning: the CLI's start-up, and long-lived services (the API and queue workers)."""

from __future__ import annotations

import gc


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
    """At a command's start: importing LangGraph, LangChain and pydantic makes ~10^6
    objects that live to the end, and collecting as they come walked them again and
    again (~0.15 s of a `flowloom run`). `collect_from_here` ends the hold."""
    gc.disable()


def collect_from_here() -> None:
    """Once a command has loaded what it runs with: freeze what start-up made, as
    `freeze_startup_heap` does but without a full collection first (a short command
    frees little), and collect from here on."""
    gc.freeze()
    gc.enable()


def thaw_heap() -> None:
    """At shutdown: a process that embeds the app (tests, a notebook) gets it all back."""
    gc.unfreeze()
