"""Full collections are paced while runs go (app/tuning.py) and Python's pacing is back
once none goes; two runs at once share one pacing."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from flowloom.app.runner import execute_workflow_async
from flowloom.app.tuning import FULL_EVERY, MIDDLE_EVERY, paced_collection
from tests.conftest import Runner, t


@pytest.fixture(autouse=True)
def default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_nested_pacing_ends_with_the_outermost() -> None:
    with paced_collection():
        assert gc.get_threshold() == (700, MIDDLE_EVERY, FULL_EVERY)
        with paced_collection():
            assert gc.get_threshold() == (700, MIDDLE_EVERY, FULL_EVERY)
        assert gc.get_threshold() == (700, MIDDLE_EVERY, FULL_EVERY)
    assert gc.get_threshold() == (700, 10, 10)


def test_thresholds_set_meanwhile_are_kept() -> None:
    with paced_collection():
        gc.set_threshold(5000, 20, 30)
    assert gc.get_threshold() == (5000, 20, 30)


def test_a_higher_setting_is_not_lowered() -> None:
    gc.set_threshold(700, 10, 500)
    with paced_collection():
        assert gc.get_threshold() == (700, MIDDLE_EVERY, 500)
    assert gc.get_threshold() == (700, 10, 500)
    gc.set_threshold(700, 5000, 10)
    with paced_collection():
        assert gc.get_threshold() == (700, 5000, FULL_EVERY)
    assert gc.get_threshold() == (700, 5000, 10)


async def test_runs_are_paced_while_they_go(run: Runner) -> None:
    seen: list[tuple[int, int, int]] = []

    def on_event(event: dict[str, Any]) -> None:
        seen.append(gc.get_threshold())

    doc = {"nodes": [t("a", 1), {"id": "nap", "type": "delay", "config": {"seconds": 0.05}}],
           "edges": [{"source": "a", "target": "nap"}]}
    records = await asyncio.gather(*(
        execute_workflow_async(doc, settings=run.settings, store=run.store, on_event=on_event)
        for _ in range(2)))
    assert [r.status for r in records] == ["succeeded", "succeeded"]
    assert len(seen) >= 8 and set(seen) == {(700, MIDDLE_EVERY, FULL_EVERY)}
    assert gc.get_threshold() == (700, 10, 10)
