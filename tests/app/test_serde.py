"""The checkpoint serializer's fast path for `Send` (app/stores/serde.py) writes the bytes
LangGraph's own serializer writes, so old checkpoints read back and new ones read anywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Send

from flowloom.app.records import NodeState
from flowloom.app.stores.serde import CheckpointSerializer

VALUES: list[Any] = [
    Send("each.items", {"start": 0, "items": [1, "two", None, {"x": [3.5]}]}),
    Send("item", {"key": "p@0", "index": 7, "item": {"when": datetime(2026, 1, 2, tzinfo=UTC)}}),
    Send("item", 1, timeout=timedelta(seconds=3)),
    [Send("a", {"nested": [Send("b", {})]}), Send("c", None)],
    {"__pregel_tasks": [Send("x", {"set": {1, 2}})]},
    NodeState(status="succeeded", output={"a": 1}),
    {"plain": [1, 2.5, "s", True, None], "when": datetime(2026, 1, 2, tzinfo=UTC)},
    None,
    b"raw",
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_same_bytes_as_langgraph_and_reads_back(value: Any) -> None:
    ours, stock = CheckpointSerializer(), JsonPlusSerializer()
    typed = ours.dumps_typed(value)
    assert typed == stock.dumps_typed(value)
    assert stock.loads_typed(typed) == value == ours.loads_typed(typed)


def test_what_msgpack_cannot_encode_takes_the_stock_path() -> None:
    class Opaque:
        __slots__ = ()

    with pytest.raises(TypeError):
        JsonPlusSerializer().dumps_typed(Opaque())
    with pytest.raises(TypeError):
        CheckpointSerializer().dumps_typed(Opaque())
    pickled = CheckpointSerializer(pickle_fallback=True).dumps_typed({1, 2j})
    assert pickled == JsonPlusSerializer(pickle_fallback=True).dumps_typed({1, 2j})
