"""What makes a string a template, a single expression or plain text, and what the
sandbox's Jinja settings mean for a workflow (found unpinned by mutation testing)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.exceptions import UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.expressions import (
    Expressions,
    Sandbox,
    has_template,
    namespace,
    syntax_problem,
)
from flowloom.graphs.instrument import finalize

NS = namespace(inputs={"user_name": "Ada", "amount": 150, "tags": ["a", "b"]},
               outputs={}, run={"id": "r1"})


def failure(ex: Expressions, text: str, ns: dict[str, Any] = NS, *,
            expression: bool = False) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        if expression:
            ex.evaluate(text, ns, field="f")
        else:
            ex.render(text, ns, field="f")
    return info.value


@pytest.mark.parametrize("template", ["Hi {{ nope }}", "{% if nope %}a{% endif %}",
                                      "{{ nope }}!", "{{ [nope] }}"])
def test_an_unknown_name_fails_in_text_as_in_an_expression(template: str) -> None:
    error = failure(Expressions(), template)
    assert str(error) == "node, field `f`: unknown name or attribute: 'nope' is undefined"
    assert error.kind == "ExpressionError"


def test_text_is_not_html_escaped_and_keeps_its_last_newline() -> None:
    ns = namespace(inputs={"s": "<b>&'\""}, outputs={}, run={})
    rendered = Expressions().render("{{ inputs.s }} and {{ inputs.s }}\n", ns, field="f")
    assert rendered == "<b>&'\" and <b>&'\"\n"


def test_a_sandbox_made_anywhere_has_the_same_settings() -> None:
    # Expressions share one Sandbox made at import; one made later must not differ.
    sandbox = Sandbox()
    assert sandbox.from_string("{{ s }} {{ s }}\n").render(s="<b>") == "<b> <b>\n"
    with pytest.raises(UndefinedError, match="'nope' is undefined"):
        sandbox.from_string("Hi {{ nope }}").render()


def test_rendered_text_may_reach_the_limit_exactly() -> None:
    ex = Expressions(max_output_chars=10)
    assert ex.render("{{ 'a' }}bcdefghij", NS, field="f") == "abcdefghij"
    assert str(failure(ex, "{{ 'a' }}bcdefghijk")) == (
        "node, field `f`: limit exceeded: rendered text would exceed 10 characters")


def test_a_value_printed_into_text_is_measured_before_it_becomes_text() -> None:
    error = failure(Expressions(max_output_chars=100), "list: {{ range(60) | list }}")
    assert str(error) == "node, field `f`: limit exceeded: output would exceed 100 characters"
    assert error.kind == "LimitExceeded"


@settings(max_examples=200, deadline=None)
@given(st.text().filter(lambda s: "{{" not in s and "{%" not in s))
@example("a {# is no comment here")
@example("{#}} %} }} {#")
@example("{ {x} } and % }")
def test_a_string_without_a_tag_is_plain_text(text: str) -> None:
    ex = Expressions()
    assert ex.render(text, NS, field="f") == text
    assert ex.render({"k": [text, 1]}, NS, field="f") == {"k": [text, 1]}


TEXTS = st.text(alphabet="ab{}% ", max_size=8)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | TEXTS,
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXTS, inner, max_size=4), max_leaves=12)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


@settings(max_examples=300, deadline=None)
@given(JSON)
@example(5)
@example([1, None, ["{{ x }}"]])
def test_has_template_finds_a_template_string_at_any_depth(value: Any) -> None:
    assert has_template(value) == any("{{" in s or "{%" in s for s in strings(value))


@pytest.mark.parametrize(("template", "value"), [
    # one expression that holds the delimiters (nested braces, string literals): still
    # its native value
    ("{{ {'user': {'name': user_name}} }}", {"user": {"name": "Ada"}}),
    ("{{ [{'a': {'b': amount}}, {}] }}", [{"a": {"b": 150}}, {}]),
    ("{{ {'open': '{{', 'close': '}}'} }}", {"open": "{{", "close": "}}"}),
    ("{{ 'a}}b'.split('}}') }}", ["a", "b"]),
    ("{{ ['{%', user_name] }}", ["{%", "Ada"]),
    ("{{ '}}' }}", "}}"),
    # text around or between expressions: text
    ("{{ user_name }} b }}", "Ada b }}"),
    ("{{ user_name }} and {{ amount }}", "Ada and 150"),
    ("{{ user_name }}{{ amount }}", "Ada150"),
    ("{{ amount }}{% if tags %}!{% endif %}", "150!"),
])
def test_a_single_expression_is_told_from_text_by_its_tokens(template: str,
                                                             value: Any) -> None:
    assert Expressions().render(template, NS, field="f") == value


@pytest.mark.parametrize(("text", "message"), [
    ("1 2", "syntax error at line 1: chunk after expression"),
    ("amount\n 2", "syntax error at line 2: chunk after expression"),
    ("{{ amount {{ 2 }}", "syntax error at line 1: expected token ':', got '{'"),
])
def test_a_broken_expression_says_where(text: str, message: str) -> None:
    assert str(failure(Expressions(), text, expression=True)) == f"node, field `f`: {message}"


def test_a_broken_single_expression_is_reported_as_an_expression() -> None:
    assert str(failure(Expressions(), "{{ amount + }}")) == (
        "node, field `f`: syntax error at line 1: unexpected 'end of template'")
    # a tag opened inside: not one expression, so the template's own message
    assert str(failure(Expressions(), "{{ amount {% 2 }}")) == (
        "node, field `f`: syntax error at line 1: expected token 'end of print statement', "
        "got '{'")


def test_a_single_expression_nested_too_deep_is_a_problem_not_a_crash() -> None:
    text = "{{ " + "{" * 5000 + " }}"  # `{{` inside: whether it is one expression is asked
    nested = ("nested more than 32 levels deep at line 1 (brackets, blocks and unary "
              "operators, counted together)")
    assert syntax_problem(text) == nested
    assert syntax_problem(text, expression=True) == (
        "an expression is bare Jinja, without {{ }} or {% %} blocks")
    assert str(failure(Expressions(), text)) == "node, field `f`: recursion too deep"


def test_an_expression_may_come_in_braces() -> None:
    ex = Expressions()
    assert ex.evaluate("{{ inputs.amount > 100 }}", NS, field="f") is True
    assert ex.evaluate("  {{ tags }}\n", NS, field="f") == ["a", "b"]


def test_errors_have_their_kind_and_exact_message() -> None:
    ex = Expressions()
    error = failure(ex, "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}")
    assert (str(error), error.kind) == ("node, field `f`: recursion too deep", "ExpressionError")
    error = failure(ex, "'a' + 1", expression=True)
    assert str(error) == ('node, field `f`: TypeError: can only concatenate str (not "int") '
                          "to str")
    assert error.kind == "ExpressionError"


def test_an_unknown_name_fails_in_every_thread() -> None:
    ex = Expressions()
    with ThreadPoolExecutor(1) as pool:  # not the thread that compiled it: Jinja's own path
        for _ in range(2):
            assert str(pool.submit(failure, ex, "nope", expression=True).result()) == (
                "node, field `f`: unknown name or attribute: 'nope' is undefined")
            assert str(failure(ex, "nope", expression=True)) == (
                "node, field `f`: unknown name or attribute: 'nope' is undefined")


def test_threads_evaluating_at_once_each_get_their_own_answer() -> None:
    """Threads switch between any two bytecodes here: a context shared by two threads
    would give one the other's names or result (in about nine rounds of ten)."""
    ex = Expressions()
    text = "outputs.a * 2 + inputs.k"
    assert ex.evaluate(text, {"outputs": {"a": 0}, "inputs": {"k": 0}}, field="f") == 0

    def answers(k: int, start: threading.Barrier) -> list[int]:
        start.wait()
        return [ex.evaluate(text, {"outputs": {"a": n}, "inputs": {"k": k}}, field="f")
                for n in range(2000)]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(3) as pool:
            for _ in range(5):
                start = threading.Barrier(3)
                got = list(pool.map(answers, (1, 2, 3), [start] * 3))
                assert got == [[n * 2 + k for n in range(2000)] for k in (1, 2, 3)]
    finally:
        sys.setswitchinterval(interval)


def test_each_text_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[Any] = []
    compile_ = Sandbox.compile

    def counting(self: Sandbox, source: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(source)
        return compile_(self, source, *args, **kwargs)

    monkeypatch.setattr(Sandbox, "compile", counting)
    ex = Expressions()
    for _ in range(3):
        assert ex.render("{{ amount }} EUR", NS, field="f") == "150 EUR"
        assert ex.render(["{{ amount }}"], NS, field="f") == [150]
        assert ex.evaluate("amount > 100", NS, field="f") is True
    assert len(compiled) == 3


PLAIN = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True,
                                      finalize=finalize)


@pytest.mark.parametrize("options", [{}, {"raw": True}, {"raw": True, "defer_init": True}])
def test_sandbox_compile_is_jinjas_compile_with_the_budget_put_in(
        options: dict[str, Any]) -> None:
    # A template the budget leaves alone (no loop, `~` or literal) compiles as Jinja's.
    text = "Hi {{ user_name | upper }}"
    mine = Sandbox().compile(text, name="greeting", filename="greeting.txt", **options)
    jinjas = PLAIN.compile(text, name="greeting", filename="greeting.txt", **options)
    if options.get("raw"):
        assert mine == jinjas and "name = 'greeting'" in mine
    else:
        assert mine.co_filename == jinjas.co_filename == "greeting.txt"
    with pytest.raises(TemplateSyntaxError) as info:
        Sandbox().compile("{{ 1 + }}", name="broken", filename="broken.txt", **options)
    assert (info.value.name, info.value.filename, info.value.lineno) == (
        "broken", "broken.txt", 1)


def test_names_outside_the_namespace_stay_unknown() -> None:
    ns = namespace(inputs={"a": 1}, outputs={}, run={}, extra={"item": 2})
    assert Expressions().evaluate("a + item", ns, field="f") == 3
    assert set(ns) == {"a", "inputs", "outputs", "run", "item"}
