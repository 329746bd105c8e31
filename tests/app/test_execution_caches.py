"""load_spec and compiled_graph remember by content, and forget the least recently used
entry past GRAPH_CACHE_SIZE. Each test fills the caches itself (under mutmut an autouse
fixture empties them before every test)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flowloom.app import execution
from flowloom.app.execution import compiled_graph, load_spec
from flowloom.app.records import RunRecord
from flowloom.app.runner import execute_workflow_async
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.graphs.errors import SpecError
from tests.conftest import t

BIG = 2**70  # past 64 bits: orjson refuses it, the standard json module writes it


def doc(n: int) -> dict[str, Any]:
    return {"name": f"doc {n}", "nodes": [t("a", n)]}


@pytest.fixture
def small_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches of two entries each, empty."""
    monkeypatch.setattr(execution, "GRAPH_CACHE_SIZE", 2)
    for name in ("_SPECS", "_GRAPHS", "_BY_CONTENT"):
        getattr(execution, name).clear()


def test_the_same_content_in_any_key_order_loads_once(small_caches: None) -> None:
    first = load_spec({"name": "x", "nodes": [t("a", 1)]})
    assert load_spec({"nodes": [t("a", 1)], "name": "x"}) is first
    assert load_spec({"name": "x", "nodes": [{"config": {"output": 1}, "type": "transform",
                                                "id": "a"}]}) is first
    assert load_spec({"name": "y", "nodes": [t("a", 1)]}) is not first


def test_content_json_cannot_write_is_remembered_by_content(small_caches: None) -> None:
    """Integers past 64 bits, and values of no JSON type, in documents given as dicts."""
    when = dt.date(2026, 1, 2)
    one = load_spec({"name": "x", "nodes": [t("a", BIG), t("b", when)]})
    assert load_spec({"nodes": [{"config": {"output": BIG}, "type": "transform", "id": "a"},
                                t("b", when)], "name": "x"}) is one
    two = load_spec({"name": "x", "nodes": [t("a", BIG + 1), t("b", when)]})
    assert two is not one
    assert [n.config["output"] for n in two.nodes] == [BIG + 1, when]


def test_mixed_keys_and_values_json_cannot_hold_are_remembered(small_caches: None) -> None:
    """An integer key beside a text one (which the standard json module cannot sort), and
    a Decimal value (which orjson writes through str())."""
    value = {1: Decimal("1.5"), "b": 2}
    one = load_spec({"name": "x", "nodes": [t("a", value)]})
    assert one.nodes[0].config["output"] == value
    assert load_spec({"nodes": [t("a", {"b": 2, 1: Decimal("1.5")})], "name": "x"}) is one
    assert load_spec({"name": "x", "nodes": [t("a", {**value, "b": 3})]}) is not one
    with_null = {1: None, "b": 2}  # and a null, whose documents are keyed the standard way
    first = load_spec({"nodes": [t("a", with_null)]})
    assert load_spec({"nodes": [t("a", {"b": 2, 1: None})]}) is first


def test_a_document_file_is_read_afresh_each_time(tmp_path: Path, small_caches: None) -> None:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(doc(1)))
    assert load_spec(path).name == "doc 1"
    path.write_text(json.dumps(doc(2)))
    assert load_spec(path).name == "doc 2"
    assert load_spec(str(path)).name == "doc 2"
    assert execution._SPECS == {}


def test_the_least_recently_used_spec_is_forgotten(small_caches: None) -> None:
    zero, one = load_spec(doc(0)), load_spec(doc(1))
    assert load_spec(doc(0)) is zero  # now the most recently used
    load_spec(doc(2))  # past two: `one` goes
    assert len(execution._SPECS) == 2
    assert load_spec(doc(0)) is zero
    assert load_spec(doc(1)) is not one


async def test_a_graph_is_kept_per_version_and_saver_and_forgotten_least_recent_first(
        tmp_path: Path, small_caches: None) -> None:
    store = SqliteStore(tmp_path / "a.db")
    try:
        async with store.checkpointer() as saver:
            def graph(n: int, version: int = 1) -> tuple[Any, Any]:
                record = RunRecord(execution_id="r", workflow_id=f"w{n}",
                                   workflow_version=version)
                return compiled_graph(load_spec(doc(n)), record, saver)

            zero = graph(0)
            assert zero[0].checkpointer is saver
            # another version of the same content: the same graph, copied, and its
            # templates with it
            copy = graph(0, version=2)
            assert copy[0] is not zero[0] and copy[1] is zero[1]
            assert copy[0].checkpointer is saver
            assert graph(0) is zero and graph(0, version=2) is copy
            one = graph(1)  # past two: version 1 of `w0` goes, its content stays
            assert (len(execution._GRAPHS), len(execution._BY_CONTENT)) == (2, 2)
            assert graph(1) is one and graph(0, version=2) is copy
            again = graph(0)
            assert again is not zero and again[1] is zero[1]
            graph(2)  # past two: the content of `w1` goes, the least recently compiled
            assert graph(0, version=3)[1] is zero[1]
            assert graph(1, version=3)[1] is not one[1]
    finally:
        await store.close()


async def test_a_copied_graph_checkpoints_in_its_own_store(tmp_path: Path) -> None:
    first, second = SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")
    document = {"id": "w", "nodes": [t("a", "{{ inputs.n + 1 }}")], "output": "{{ a }}"}
    try:
        one = await execute_workflow_async(document, {"n": 1}, store=first, execution_id="x1")
        two = await execute_workflow_async(document, {"n": 2}, store=second,
                                           execution_id="x2")
        assert (one.output, two.output) == (2, 3)
        held = {}
        for name, store in (("first", first), ("second", second)):
            async with store.checkpointer() as saver:
                held[name] = [run_id for run_id in ("x1", "x2") if await saver.aget_tuple(
                    {"configurable": {"thread_id": run_id}}) is not None]
        assert held == {"first": ["x1"], "second": ["x2"]}
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
def test_a_document_json_cannot_hold_is_refused_and_takes_no_one_elses_place(
        number: float) -> None:
    # orjson writes NaN and Infinity as null, as it writes None: neither document may be
    # taken for the other, whichever was remembered first.
    assert load_spec({"nodes": [t("a", None)]}).nodes[0].config == {"output": None}
    for _ in range(2):  # refused, so never remembered either
        with pytest.raises(SpecError) as info:
            load_spec({"nodes": [t("a", number)]})
        assert [(p.path, p.message) for p in info.value.problems] == [
            ("$.nodes[0].config.output", f"{number} is not a JSON number")]
    assert load_spec({"nodes": [t("a", None)]}).nodes[0].config == {"output": None}
    # The same beside a value neither json module writes as it is (a Decimal)
    assert load_spec({"nodes": [t("a", [Decimal("1.5"), None])]}).nodes[0].config == {
        "output": [Decimal("1.5"), None]}
    with pytest.raises(SpecError, match="is not a JSON number"):
        load_spec({"nodes": [t("a", [Decimal("1.5"), number])]})
