"""The Python API without a store of the caller's: one store and one set of services per
settings and event loop, reused across calls, closed when its loop shuts down; a
workflow compiles once, whatever the store. Counts, never times."""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from typing import Any

import pytest

from flowloom.app import execution, shared
from flowloom.app.runner import execute_workflow_async, run_workflow
from flowloom.app.settings import Settings
from flowloom.app.stores.base import RunQuery
from flowloom.app.stores.mongo import MongoStore
from flowloom.app.stores.sqlite import SqliteStore
from tests.conftest import chain, t
from tests.service_fixtures import ON_EVERY_STORE

pytestmark = ON_EVERY_STORE

DOCUMENT: dict[str, Any] = {
    "nodes": [t("a", "{{ inputs.n + 1 }}"), t("b", "{{ a * 2 }}")],
    "edges": chain("a", "b"),
}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts of stores opened and closed (either backend) and of graphs compiled."""
    counts: Counter[str] = Counter()
    monkeypatch.setattr(execution, "_GRAPHS", OrderedDict())
    monkeypatch.setattr(execution, "_BY_CONTENT", OrderedDict())
    compile_graph = execution.compile_workflow

    def counting_compile(*args: Any, **kwargs: Any) -> Any:
        counts["compiled"] += 1
        return compile_graph(*args, **kwargs)

    monkeypatch.setattr(execution, "compile_workflow", counting_compile)
    for cls in (SqliteStore, MongoStore):
        init, close = cls.__init__, cls.close

        def counting_init(self: Any, *args: Any, _init: Any = init, **kwargs: Any) -> None:
            counts["opened"] += 1
            _init(self, *args, **kwargs)

        async def counting_close(self: Any, _close: Any = close) -> None:
            counts["closed"] += 1
            await _close(self)

        monkeypatch.setattr(cls, "__init__", counting_init)
        monkeypatch.setattr(cls, "close", counting_close)
    return counts


async def test_calls_on_one_loop_share_one_store_and_one_graph(
        settings: Settings, counted: Counter[str]) -> None:
    # Three first calls at once still open one store between them.
    first = await asyncio.gather(*(execute_workflow_async(DOCUMENT, {"n": n},
                                                          settings=settings)
                                   for n in range(3)))
    assert [r.output for r in first] == [2, 4, 6]
    for n in range(3, 6):
        record = await execute_workflow_async(DOCUMENT, {"n": n}, settings=settings)
        assert record.output == 2 * (n + 1)
    assert dict(counted) == {"opened": 1, "compiled": 1}  # and none closed yet
    store, _ = await shared.shared_resources(settings)
    assert len((await store.list_runs(RunQuery(limit=10))).runs) == 6


def test_each_event_loop_has_its_own_store_closed_with_the_loop(
        settings: Settings, counted: Counter[str]) -> None:
    async def twice(n: int) -> list[Any]:
        return [(await execute_workflow_async(DOCUMENT, {"n": n}, settings=settings)).output
                for _ in range(2)]

    assert asyncio.run(twice(1)) == [4, 4]
    assert (counted["opened"], counted["closed"], shared.open_count()) == (1, 1, 0)
    # A new loop opens its own (MongoDB's client works only on the loop it began on);
    # its saver is new, and the graph compiled for the first is copied with it.
    assert asyncio.run(twice(2)) == [6, 6]
    assert run_workflow(DOCUMENT, {"n": 3}, settings=settings).output == 8
    assert dict(counted) == {"opened": 3, "closed": 3, "compiled": 1}
    assert shared.open_count() == 0
    assert len(execution._GRAPHS) == 3  # one graph per saver, all of one compile


def test_a_store_left_open_by_a_loop_is_closed_at_exit(
        settings: Settings, counted: Counter[str]) -> None:
    loop = asyncio.new_event_loop()  # a caller's loop that is never shut down properly
    try:
        record = loop.run_until_complete(
            execute_workflow_async(DOCUMENT, {"n": 1}, settings=settings))
        assert record.output == 4
        assert (shared.open_count(), counted["closed"]) == (1, 0)
        shared._close_at_exit()  # what atexit runs
        assert (shared.open_count(), counted["closed"]) == (0, 1)
    finally:
        loop.close()
