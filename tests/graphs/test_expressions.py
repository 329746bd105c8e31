"""Expressions and templates: native values, names in scope, and the sandbox."""

from __future__ import annotations

import tracemalloc

import pytest

from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.expressions import Expressions, namespace, syntax_problem
from tests.conftest import Runner, chain, t

NS = namespace(inputs={"user_name": "Ada", "amount": 150, "tags": ["a", "b"],
                       "items": [1, 2], "clash": "input"},
               outputs={"fetch_data": {"body": {"id": 7}}, "skipped": None, "clash": "node"},
               run={"id": "r1", "workflow_id": "w"})


@pytest.fixture
def ex() -> Expressions:
    return Expressions()


def test_single_expression_yields_native_value(ex: Expressions) -> None:
    assert ex.render("{{ inputs.tags }}", NS, field="f") == ["a", "b"]
    assert ex.render("  {{ inputs.amount * 2 }} ", NS, field="f") == 300
    assert ex.render("{{ outputs.fetch_data.body }}", NS, field="f") == {"id": 7}
    assert ex.render("{{ inputs.amount }} EUR", NS, field="f") == "150 EUR"


def test_render_walks_json_values(ex: Expressions) -> None:
    value = {"a": ["{{ user_name }}", 3, None], "b": {"c": "x{{ 1 + 1 }}"}}
    assert ex.render(value, NS, field="f") == {"a": ["Ada", 3, None], "b": {"c": "x2"}}


def test_bare_expressions(ex: Expressions) -> None:
    assert ex.evaluate("inputs.amount > 100 and outputs.fetch_data", NS, field="f")
    assert ex.evaluate("inputs.items", NS, field="f") == [1, 2]  # the key, not dict.items


def test_unqualified_names_resolve_to_node_output_then_input(ex: Expressions) -> None:
    assert ex.render("{{ fetch_data.body.id }}", NS, field="f") == 7
    assert ex.render("{{ user_name }}", NS, field="f") == "Ada"
    assert ex.render("{{ clash }}", NS, field="f") == "node"


@pytest.mark.parametrize(("template", "value"), [
    ("{{ user_name }}", "Ada"),
    ("{{ [user_name, {'k': amount}][1].k if tags else clash }}", 150),
    ("{{ items | sum(start=amount) }}", 153),
    ("{{ user_name is defined and clash in tags }}", False),
    ("{{ (fetch_data.body.id ~ '-' ~ run.id) | upper }}", "7-R1"),
    ("{{ items | map('string') | join(user_name) }}", "1Ada2"),
])
def test_names_reach_an_expression_wherever_they_sit(ex: Expressions, template: str,
                                                     value: object) -> None:
    assert ex.render(template, NS, field="f") == value


def test_skipped_node_is_null_so_or_merges_branches(ex: Expressions) -> None:
    assert ex.render("{{ outputs.skipped or outputs.fetch_data.body.id }}", NS, field="f") == 7


def test_run_names_in_scope(ex: Expressions) -> None:
    assert ex.render("{{ run.id }}/{{ run.workflow_id }}", NS, field="f") == "r1/w"


@pytest.mark.parametrize("template", ["{{ nope }}", "{{ outputs.fetch_data.nope }}",
                                      "{{ [outputs.missing_node] }}", "{{ 1 / 0 }}",
                                      "{{ 'a' + 1 }}"])
def test_errors_name_the_field_and_never_pass_silently(ex: Expressions, template: str) -> None:
    with pytest.raises(ExpressionError) as info:
        ex.render({"deep": [template]}, NS, field="output")
    assert info.value.field == "output.deep[0]"


SANDBOX_ESCAPES = [
    "{{ ().__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ()|attr('__class__') }}",
    "{{ (()|attr('__class__')|attr('__base__')|attr('__subclasses__'))() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    # CVE-2024-56326: str.format reached through an indirect reference
    "{% set f = '{0.__class__}'.format %}{{ f(1) }}",
    "{{ '{0.__class__.__mro__}'.format(1) }}",
    # CVE-2025-27516: the attr filter handing out str.format
    "{{ ('{0.__class__}'|attr('format'))(1) }}",
    "{{ ('{x.__class__}'|attr('format_map'))({'x': 1}) }}",
    "{{ request.application.__globals__ }}",
    "{{ config.items() }}",
]


@pytest.mark.parametrize("payload", SANDBOX_ESCAPES)
def test_sandbox_escapes_fail_clearly(ex: Expressions, payload: str) -> None:
    with pytest.raises(ExpressionError) as info:
        ex.render(payload, NS, field="f")
    message = str(info.value)
    assert "field `f`" in message
    assert any(word in message for word in ("not allowed", "unknown name", "unsafe"))


EXHAUSTION = [
    ("{{ 'a' * 10**9 }}", "repetition"),
    ("{{ [1] * 10**8 }}", "repetition"),
    ("{{ range(10**9) | list }}", "range"),
    ("{{ 10 ** (10 ** 6) }}", "power"),
    ("{{ 9 ** 999999 }}", "power"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
     "exceed"),
    ("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", "recursion"),
    ("{{ '%0999999999d' % 1 }}", "format width"),
    ("{{ '%999999999d' | format(1) }}", "format width"),
    ("{{ 'x' | center(999999999) }}", "center"),
    ("{{ 'x'.ljust(999999999) }}", "ljust"),
    ("{{ ('ab' * 500000).replace('', 'cd' * 100000) }}", "replace"),
    ("{{ ('ab' * 500000) | replace('', 'cd' * 100000) }}", "replace"),
    ("{{ 'x' | indent(999999999, true) }}", "indent"),
]


@pytest.mark.parametrize(("template", "why"), EXHAUSTION)
def test_resource_exhaustion_fails_fast(ex: Expressions, template: str, why: str) -> None:
    tracemalloc.start()  # refused before the work is done: no big allocation on the way
    try:
        with pytest.raises(ExpressionError) as info:
            ex.render(template, NS, field="f")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024
    assert why in str(info.value)


def test_render_time_is_bounded() -> None:
    ex = Expressions(max_seconds=0.2)
    template = ("{% for i in range(100000) %}{% for j in range(100000) %}"
                "{% set x = i * j %}{% endfor %}{% endfor %}")
    with pytest.raises(ExpressionError, match="longer than"):  # the budget, no other guard
        ex.render(template, NS, field="f")


def test_templates_are_compiled_once(ex: Expressions) -> None:
    ex.render("{{ inputs.amount }}", NS, field="f")
    compiled = dict(ex._compiled)
    ex.render("{{ inputs.amount }}", NS, field="f")
    assert ex._compiled == compiled and len(compiled) == 1


def test_syntax_problem_reports_parse_errors() -> None:
    assert syntax_problem("{{ a + }}") is not None
    assert syntax_problem("{% if %}") is not None
    assert syntax_problem("a and", expression=True) is not None
    assert syntax_problem("{{ a.b }} and {{ c }}") is None


async def test_template_error_fails_node_with_node_field_and_message(run: Runner) -> None:
    nodes = [t("a", {"greeting": "Hi {{ user.name }}"})]
    record = await run({"nodes": nodes})
    assert record.status == "failed"
    assert record.node_states["a"].error["message"] == (
        "node `a`, field `output.greeting`: unknown name or attribute: 'user' is undefined")


async def test_not_yet_run_node_is_null(run: Runner) -> None:
    nodes = [t("early", "{{ outputs.late is none }}"), t("late", 1)]
    record = await run({"nodes": nodes, "edges": chain("early", "late")})
    assert record.node_states["early"].output is True


async def test_run_names_in_a_real_run(run: Runner) -> None:
    nodes = [t("who", {"id": "{{ run.id }}", "workflow": "{{ run.workflow_id }}",
                       "started": "{{ run.started_at }}"})]
    await run.store.put_workflow("named", {"id": "named", "nodes": nodes})  # published
    record = await run({"id": "named", "nodes": nodes}, execution_id="run-9")
    assert record.output["id"] == "run-9" and record.output["workflow"] == "named"
    assert record.started_at is not None
    assert record.output["started"] == record.started_at.isoformat()


def test_a_compiled_expression_gives_each_thread_and_call_its_own_answer() -> None:
    from concurrent.futures import ThreadPoolExecutor
    exprs = Expressions()
    text = "outputs.a * 2 + inputs.k"
    assert exprs.evaluate(text, {"outputs": {"a": 1}, "inputs": {"k": 0}}, field="f") == 2

    def evaluate(n: int) -> int:
        result: int = exprs.evaluate(text, {"outputs": {"a": n}, "inputs": {"k": 1}},
                                     field="f")
        return result

    with ThreadPoolExecutor(4) as pool:  # other threads take Jinja's own path
        assert list(pool.map(evaluate, range(200))) == [n * 2 + 1 for n in range(200)]
    assert [evaluate(n) for n in range(3)] == [1, 3, 5]  # and the reused context resets


def test_a_compiled_expression_keeps_no_run_data_between_calls() -> None:
    import gc
    import weakref

    class Output(dict[str, int]):
        pass  # a dict that can be weakly referenced

    exprs = Expressions()
    data = Output(a=1)
    seen = weakref.ref(data)
    assert exprs.evaluate("outputs.a + 1", {"outputs": data}, field="f") == 2
    del data
    gc.collect()
    assert seen() is None


MUTATORS = [
    ("dict", "update({'x': 2})"), ("dict", "pop('x')"), ("dict", "popitem()"),
    ("dict", "clear()"), ("dict", "setdefault('y', 1)"), ("dict", "__setitem__('x', 2)"),
    ("list", "append(9)"), ("list", "extend([9])"), ("list", "insert(0, 9)"),
    ("list", "remove(1)"), ("list", "pop()"), ("list", "clear()"), ("list", "sort()"),
    ("list", "reverse()"), ("list", "__setitem__(0, 9)"),
    ("set", "add(9)"), ("set", "discard(1)"), ("set", "remove(1)"), ("set", "pop()"),
    ("set", "clear()"), ("set", "update([9])"), ("set", "difference_update([1])"),
]


@pytest.mark.parametrize(("kind", "call"), MUTATORS)
def test_values_in_scope_are_read_only(ex: Expressions, kind: str, call: str) -> None:
    values = {"dict": {"x": 1}, "list": [3, 1], "set": {1, 2}}
    before = {"dict": {"x": 1}, "list": [3, 1], "set": {1, 2}}
    ns = namespace(inputs={"v": values[kind]}, outputs={"n": {"v": values[kind]}}, run={})
    for expression in (f"inputs.v.{call}", f"n.v.{call}"):
        with pytest.raises(ExpressionError, match="not allowed in the sandbox"):
            ex.evaluate(expression, ns, field="f")
        with pytest.raises(ExpressionError, match="not allowed in the sandbox"):
            ex.render("{{ " + expression + " }} done", ns, field="f")
    assert values == before


@pytest.mark.parametrize("call", ["append(9)", "pop()", "sort()"])
@pytest.mark.parametrize("target", ["a.l", "inputs.l"])
async def test_a_mutating_expression_leaves_stored_values_alone(run: Runner, call: str,
                                                                target: str) -> None:
    doc = {"nodes": [t("a", {"l": [3, 1]}), t("b", "{{ " + target + "." + call + " }}")],
           "edges": chain("a", "b")}
    record = await run(doc, {"l": [2, 1]})
    assert record.status == "failed"
    [error] = record.errors
    assert error.message.startswith("node `b`, field `output`: not allowed in the sandbox")
    assert record.inputs == {"l": [2, 1]}
    assert record.node_states["a"].output == {"l": [3, 1]}


def test_render_budget_message_names_the_budget_in_force() -> None:
    ex = Expressions(max_seconds=0.2)
    template = ("{% for i in range(100000) %}{% for j in range(100000) %}"
                "{% set x = i * j %}{% endfor %}{% endfor %}")
    with pytest.raises(ExpressionError) as info:
        ex.render(template, NS, field="f")
    assert str(info.value) == "node, field `f`: limit exceeded: render took longer than 0.2s"



@pytest.mark.parametrize(("expression", "key"), [
    ("{(1, 2): 3}", "tuple (1, 2)"),
    ("[1, {'a': {(0,): 'deep'}}]", "tuple (0,)"),
])
def test_a_result_with_a_key_json_cannot_hold_is_refused_naming_it(
        ex: Expressions, expression: str, key: str) -> None:
    with pytest.raises(ExpressionError) as info:
        ex.evaluate(expression, NS, field="f")
    assert str(info.value) == (f"node, field `f`: a mapping key must be text, a number, true, "
                               f"false or none, not {key}")


def test_keys_json_can_hold_are_kept_as_they_are(ex: Expressions) -> None:
    assert ex.evaluate("{2: 'i', 1.5: 'f', true: 'b', none: 'n', 'k': 's'}", NS,
                       field="f") == {2: "i", 1.5: "f", True: "b", None: "n", "k": "s"}


async def test_a_node_whose_output_has_such_a_key_fails_and_the_run_goes_on(
        run: Runner) -> None:
    nodes = [t("bad", "{{ {(1, 2): 3} }}", on_error="continue"), t("next", "after")]
    record = await run({"nodes": nodes, "edges": chain("bad", "next")})
    assert (record.status, record.output) == ("succeeded", "after")
    assert record.node_states["bad"].output["error"] == {
        "type": "ExpressionError",
        "message": "node `bad`, field `output`: a mapping key must be text, a number, true, "
                   "false or none, not tuple (1, 2)"}
