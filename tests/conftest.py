from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from flowloom.app.records import RunRecord
from flowloom.app.runner import execute_workflow_async
from flowloom.app.settings import Settings, load_settings
from flowloom.app.stores import Store, open_store

pytest_plugins = ["tests.service_fixtures"]

REPO = Path(__file__).resolve().parent.parent
SPEC_DIR = REPO.parent / "shared" / "spec"


def forget_process_caches() -> None:
    """Empty what a process remembers between runs: specs and compiled graphs by content,
    and the functools caches of Flowloom's modules (templates, key texts, schemas)."""
    from flowloom.app import execution

    for remembered in (execution._SPECS, execution._GRAPHS, execution._BY_CONTENT):
        remembered.clear()
    for name, module in list(sys.modules.items()):
        if name.startswith("flowloom.") and module is not None:
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


@pytest.fixture(autouse=True)
def _afresh_under_mutation() -> None:
    """Under mutmut each test validates, compiles and renders afresh. mutmut maps tests to
    the functions they call in one process, and runs a mutant's tests in processes forked
    from it: a graph, spec or template cached by an earlier test was made by the original
    code, so a test reusing it neither counts as calling the compiler nor meets its mutant
    (a compile-time mutant that breaks every graph then 'survives')."""
    if "MUTANT_UNDER_TEST" in os.environ:
        forget_process_caches()


@pytest.fixture
def settings(store_url: str) -> Settings:
    return load_settings(store=store_url)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    """The store `settings` names: SQLite, or either backend in a module that runs
    ON_EVERY_STORE (where a test annotated with SqliteStore uses only the Store protocol)."""
    store = open_store(settings)
    yield store
    await store.close()


class Runner:
    """Runs documents on a real SQLite store in the test's folder and keeps the events."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.events: list[dict[str, Any]] = []

    async def __call__(self, document: Any, inputs: dict[str, Any] | None = None,
                       **kwargs: Any) -> RunRecord:
        return await execute_workflow_async(document, inputs, settings=self.settings,
                                            store=self.store, on_event=self.events.append,
                                            **kwargs)

    def order(self, kind: str) -> list[str]:
        return [e["node_id"] for e in self.events if e["event"] == kind]


@pytest.fixture
def run(settings: Settings, store: Store) -> Runner:
    return Runner(settings, store)


def chain(*ids: str) -> list[dict[str, str]]:
    return [{"source": a, "target": b} for a, b in itertools.pairwise(ids)]


def t(node_id: str, output: Any, **extra: Any) -> dict[str, Any]:
    """A transform node."""
    return {"id": node_id, "type": "transform", "config": {"output": output}, **extra}


def delay(node_id: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "delay", "config": {"seconds": seconds}, **extra}


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str,
                     deadline_s: float = 30.0) -> None:
    """Poll `condition` until it holds; the deadline is generous, only a hang trips it."""
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                if await condition():
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"still waiting for {what} after {deadline_s:g}s") from None


class GatedSleep:
    """A `Services.sleep` that records what was asked and returns only once opened."""

    def __init__(self, *, opened: bool = False) -> None:
        self.asked: list[float] = []
        self.gate = asyncio.Event()
        if opened:
            self.gate.set()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.gate.wait()
