from __future__ import annotations

from typing import Any

import pytest

from flowloom.graphs.limits import MAX_VALUE_DEPTH, ValueTooLarge, check_value_shape


def nested(depth: int, leaf: Any = 1) -> Any:
    """A value `depth` levels deep: objects keyed `a`, the innermost level an array."""
    value: Any = [leaf]
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_depth_counts_objects_and_arrays() -> None:
    check_value_shape(nested(MAX_VALUE_DEPTH), what="inputs")
    check_value_shape("scalar", what="inputs", max_depth=0)
    with pytest.raises(ValueTooLarge) as info:
        check_value_shape({"ok": 1, "deep": [[[1]]]}, what="output", max_depth=3)
    assert info.value.path == "$.deep[0][0]"
    assert str(info.value) == ("output at $.deep[0][0]: nested deeper than 3 levels; "
                               "the limit is MAX_VALUE_DEPTH=3")


def test_one_level_too_deep_names_the_path() -> None:
    with pytest.raises(ValueTooLarge) as info:
        check_value_shape(nested(MAX_VALUE_DEPTH + 1), what="inputs")
    assert info.value.what == "inputs"
    assert info.value.path == "$" + ".a" * MAX_VALUE_DEPTH


def test_thousands_of_levels_do_not_exhaust_the_stack() -> None:
    with pytest.raises(ValueTooLarge) as info:
        check_value_shape(nested(50_000), what="inputs")
    assert info.value.path == "$" + ".a" * MAX_VALUE_DEPTH


def test_size_limit() -> None:
    check_value_shape("x" * 8, what="answer", max_bytes=10)  # 10 bytes with its quotes
    with pytest.raises(ValueTooLarge) as info:
        check_value_shape("x" * 9, what="answer", max_bytes=10)
    assert str(info.value) == "answer at $: 11 bytes; the limit is 10"


@pytest.mark.parametrize(("value", "path", "why"), [
    ({"n": float("nan")}, "$.n", "nan is not a JSON number"),
    ({"list": [1, float("inf")]}, "$.list[1]", "inf is not a JSON number"),
    ({"t": "a\ud800b"}, "$.t", "the text holds a lone surrogate, which is not valid Unicode"),
    ({"k\udfff": 1}, "$.k\udfff", "the key holds a lone surrogate"),
])
def test_values_json_cannot_carry_are_refused_at_the_door(value: Any, path: str,
                                                          why: str) -> None:
    with pytest.raises(ValueTooLarge) as refused:
        check_value_shape(value, what="inputs", max_bytes=1_000_000)
    assert (refused.value.path, refused.value.message) == (path, why)
