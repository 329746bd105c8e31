"""The sandbox's budget at its edges: each estimate is exact where it is written as one,
each check refuses only what it is about, and a node's fields and items share one
budget (found unpinned by mutation testing of graphs/expressions.py)."""

from __future__ import annotations

from typing import Any

import pytest

from flowloom.graphs.budget import MAX_POWER_BITS, Budget
from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.expressions import Expressions, namespace

MIB = 1024 * 1024
NS = namespace(inputs={"ok": "x" * 1000, "tags": ["a", "b"], "s": "y" * 20,
                       "mib": "m" * MIB, "l": list(range(200_000)), "csv": "a," * 40,
                       "d": {f"k{i}": i for i in range(400)}},
               outputs={}, run={})


def refusal(ex: Expressions, text: str, *, budget: Budget | None = None,
            expression: bool = True, value: Any = None) -> str:
    with pytest.raises(ExpressionError) as info:
        if expression:
            ex.evaluate(text, NS, field="f", budget=budget)
        else:
            ex.render(value if value is not None else text, NS, field="f", budget=budget)
    assert info.value.kind == "LimitExceeded"
    return str(info.value).removeprefix("node, field `f`: limit exceeded: ")


def with_bytes(ex: Expressions, max_bytes: int) -> Budget:
    budget = ex.budget()
    budget.max_bytes = max_bytes
    return budget


# Memory: what each operation is charged


def test_a_list_repetition_is_charged_eight_bytes_a_slot() -> None:
    ex = Expressions(max_output_chars=2 * 10**6)
    assert len(ex.evaluate("[1, 2] * 524288", NS, field="f",
                           budget=with_bytes(ex, 8 * MIB))) == MIB
    assert refusal(ex, "[1, 2] * 524289", budget=with_bytes(ex, 8 * MIB)) == (
        "repetition: the node's expressions would allocate more than 8 MiB")


def test_a_text_repetition_is_charged_its_length() -> None:
    ex = Expressions(max_output_chars=2 * 10**6)
    assert ex.evaluate("'x' * 1048576", NS, field="f", budget=with_bytes(ex, MIB)) == "x" * MIB
    assert refusal(ex, "'x' * 1048577", budget=with_bytes(ex, MIB)) == (
        "repetition: the node's expressions would allocate more than 1 MiB")


def test_a_concatenation_is_charged_both_sides() -> None:
    ex = Expressions(max_output_chars=3 * 10**6)
    assert len(ex.evaluate("inputs.mib + 'x'", NS, field="f",
                           budget=with_bytes(ex, 2 * MIB))) == MIB + 1
    assert refusal(ex, "inputs.mib + inputs.mib", budget=with_bytes(ex, 2 * MIB)) == (
        "concatenation: the node's expressions would allocate more than 2 MiB")


def test_a_copy_is_charged_as_a_new_list() -> None:
    ex = Expressions()
    assert ex.evaluate("inputs.tags.copy()", NS, field="f", budget=with_bytes(ex, MIB)) == [
        "a", "b"]
    assert refusal(ex, "inputs.l.copy()", budget=with_bytes(ex, MIB)) == (
        "copy(): the node's expressions would allocate more than 1 MiB")


FORTY_MB = "{% for i in range(40) %}{% set x = inputs.ok * 999 %}{% endfor %}done"


@pytest.mark.parametrize(("value", "field"), [({"a": FORTY_MB, "b": FORTY_MB}, "f.b"),
                                              ([FORTY_MB, FORTY_MB], "f[1]")])
def test_the_fields_of_one_value_share_one_budget(value: Any, field: str) -> None:
    ex = Expressions(max_seconds=60)  # memory is the limit here, not time
    assert ex.render(FORTY_MB, NS, field="f") == "done"  # 40 MB of the 64
    with pytest.raises(ExpressionError) as info:
        ex.render(value, NS, field="f")
    assert str(info.value) == (f"node, field `{field}`: limit exceeded: repetition: the "
                               "node's expressions would allocate more than 64 MiB")


# Sizes: estimates and the values they are about


def test_repeating_a_long_text_or_list_zero_or_fewer_times_is_empty() -> None:
    ex = Expressions(max_output_chars=10)
    assert ex.evaluate("[inputs.s * 0, inputs.s * -1, 0 * inputs.s]", NS, field="f") == [
        "", "", ""]
    assert ex.evaluate("[inputs.l * 0, -2 * inputs.l]", NS, field="f") == [[], []]


def test_products_and_powers_up_to_the_bit_limit() -> None:
    assert MAX_POWER_BITS == 100_000
    ex = Expressions()
    assert ex.evaluate("2 ** 49999 * 2 ** 49999", NS, field="f") == 2 ** 99998
    assert refusal(ex, "2 ** 50000 * 2 ** 49999") == "product is too large"
    assert ex.evaluate("2 ** 50000", NS, field="f") == 2 ** 50000  # 2 bits an exponent
    assert refusal(ex, "2 ** 50001") == "power result is too large"
    # 1 and -1 to any power stay small
    assert ex.evaluate("[1 ** 10 ** 9, (-1) ** (10 ** 9 + 1), 0 ** 10 ** 9]", NS,
                       field="f") == [1, -1, 0]


def test_expandtabs_is_estimated_with_its_tab_size() -> None:
    ex = Expressions(max_output_chars=800)
    assert ex.evaluate("('\t' * 100).expandtabs()", NS, field="f") == " " * 800
    assert refusal(ex, "('\t' * 101).expandtabs()") == "expandtabs would exceed 800 characters"
    assert ex.evaluate("('\t' * 10).expandtabs(80)", NS, field="f") == " " * 800
    assert refusal(ex, "('\t' * 10).expandtabs(81)") == "expandtabs would exceed 800 characters"
    assert refusal(ex, "'a'.expandtabs(801)") == "str.expandtabs width would exceed 800 characters"


def test_join_is_estimated_exactly() -> None:
    ex = Expressions(max_output_chars=10)
    assert ex.evaluate("'--'.join(['ab', 'cd', 'ef'])", NS, field="f") == "ab--cd--ef"
    assert refusal(ex, "'--'.join(['ab', 'cd', 'efg'])") == "str.join would exceed 10 characters"
    assert ex.evaluate("'-----------'.join(['a'])", NS, field="f") == "a"  # no separator
    assert ex.evaluate("'-----------'.join([])", NS, field="f") == ""


def test_join_takes_any_iterable_and_one_argument() -> None:
    ex = Expressions()
    assert ex.evaluate("', '.join(inputs.tags | map('upper'))", NS, field="f") == "A, B"
    with pytest.raises(ExpressionError) as info:
        ex.evaluate("','.join(['a'], ['b'])", NS, field="f")
    assert str(info.value) == ("node, field `f`: TypeError: str.join() takes exactly one "
                               "argument (2 given)")


def test_a_new_dict_is_measured() -> None:
    ex = Expressions()
    template = "{% set x = inputs.ok * 600 %}{% set d = dict(a=x, b=x) %}{{ d | length }}"
    assert refusal(ex, template, expression=False) == (
        "the result of dict() would exceed 1,000,000 characters")
    assert ex.evaluate("dict(a=1, b=inputs.tags)", NS, field="f") == {"a": 1, "b": ["a", "b"]}


def test_a_result_is_measured() -> None:
    ex = Expressions(max_output_chars=19)
    assert refusal(ex, "inputs.s") == "result would exceed 19 characters"
    assert refusal(ex, "{{ inputs.s }}", expression=False) == "result would exceed 19 characters"


# Checks that refuse only what they are about


def test_calls_that_make_nothing_new_are_not_measured() -> None:
    ex = Expressions(max_output_chars=1000)  # d.items() would count 1,200 and more
    assert ex.evaluate("inputs.d.items() | length", NS, field="f") == 400
    assert ex.evaluate("inputs.d.values() | sum", NS, field="f") == sum(range(400))


def test_only_padding_methods_take_a_width() -> None:
    ex = Expressions(max_output_chars=10)
    assert ex.evaluate("'a\\nb'.splitlines(1000)", NS, field="f") == ["a\n", "b"]
    assert refusal(ex, "'a'.center(11)") == "str.center width would exceed 10 characters"


def test_replace_is_estimated_with_its_replacement() -> None:
    # 80 characters, 40 commas: each replaced by 1 character is counted 120 at most
    ex = Expressions(max_output_chars=120)
    assert ex.evaluate("inputs.csv.replace(',', '1')", NS, field="f") == "a1" * 40
    assert refusal(ex, "inputs.csv.replace(',', '12')") == "replace would exceed 120 characters"
    # other methods with two arguments are no replace
    assert ex.evaluate("[inputs.csv.find(',', 10), inputs.csv.count(',', 10)]", NS,
                       field="f") == [11, 35]


@pytest.mark.parametrize(("text", "error"), [
    ("[1, 2, 3] % 2", "unsupported operand type(s) for %: 'list' and 'int'"),
    ("(1, 2, 3) % 2", "unsupported operand type(s) for %: 'tuple' and 'int'"),
    ("[1, 2, 3] ** 2", "unsupported operand type(s) for ** or pow(): 'list' and 'int'"),
])
def test_an_operator_a_value_lacks_is_a_type_error_whatever_its_size(text: str,
                                                                     error: str) -> None:
    with pytest.raises(ExpressionError) as info:
        Expressions(max_output_chars=3).evaluate(text, NS, field="f")
    assert str(info.value) == f"node, field `f`: TypeError: {error}"


# The budget's clock


def test_a_budget_not_yet_started_counts_no_time() -> None:
    ex = Expressions(max_seconds=1e-9)
    heavy = "{% for i in range(1000) %}{% set x = i * i %}{% endfor %}done"
    assert ex.render(heavy, NS, field="f", budget=ex.budget(start=False)) == "done"
    assert refusal(ex, heavy, expression=False, budget=ex.budget()) == (
        "render took longer than 1e-09s")
