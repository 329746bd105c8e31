"""The budget the sandbox checks: sizes estimated before allocating, and filters that
answer as Jinja's own do within their limits."""

from __future__ import annotations

import json
import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined
from jinja2.filters import do_wordwrap
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowloom.graphs.budget import (
    MAX_OUTPUT_CHARS,
    WORKER_YIELD_SECONDS,
    Budget,
    LeaveTheLoop,
    LimitExceeded,
    size_of,
    text_size,
)
from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.expressions import Expressions, Sandbox, namespace

DATA = {"names": ["ada", "Bob", "cy", "ada"], "nums": [3, 1, 2], "text": "Hello, world! " * 5,
        "people": [{"name": "ada", "age": 36}, {"name": "bob", "age": 41},
                   {"name": "cy", "age": 36}], "d": {"b": 2, "a": 1},
        "html": "<p>Hi <b>there</b> www.example.com</p>"}

# Every filter and operator the budget wraps, on values within the limits.
TEMPLATES = [
    "{{ names|join(', ') }}", "{{ people|join(',', attribute='name') }}",
    "{{ nums|sum }}", "{{ people|sum(attribute='age') }}", "{{ [[1], [2, 3]]|sum(start=[]) }}",
    "{{ text|wordwrap(12) }}", "{{ text|wordwrap(5, wrapstring='|') }}",
    "{{ people|tojson }}", "{{ d|tojson(indent=2) }}", "{{ people|pprint }}",
    "{{ '%s is %d'|format('ada', 36) }}", "{{ '%(n)s!' % {'n': 'x'} }}",
    "{{ 'a%5.2fb' % 3.14159 }}", "{{ 'ab'|center(9) }}", "{{ 'a\nb'|indent(3, true) }}",
    "{{ text|replace('o', '0') }}", "{{ html|urlize }}", "{{ html|striptags }}",
    "{{ names|sort|list }}", "{{ names|unique|list }}", "{{ d|dictsort }}",
    "{% for g in people|groupby('age') %}{{ g.grouper }}:{{ g.list|length }} {% endfor %}",
    "{{ nums|map('string')|list }}", "{{ people|map(attribute='name')|select('ne', 'bob')|list }}",
    "{{ people|selectattr('age', 'gt', 36)|map(attribute='name')|list }}",
    "{{ nums|batch(2)|list }}", "{{ nums|slice(2)|list }}", "{{ d|items|list }}",
    "{{ nums|reverse|list }}", "{{ 'abc'|reverse }}", "{{ 'abc'|list }}", "{{ nums|string }}",
    "{{ text|title }}", "{{ text|wordcount }}", "{{ text|upper }}", "{{ text|truncate(9) }}",
    "{{ 'a b'|urlencode }}", "{{ d|xmlattr }}", "{{ nums|first }}{{ nums|last }}",
    "{{ names|length }}{{ nums|max }}{{ nums|min }}", "{{ 'x' ~ nums ~ d.a }}",
    "{{ [nums, nums] }}", "{{ {'k': nums, 'j': (1, d.a)} }}", "{{ nums * 2 }}", "{{ 'ab' * 3 }}",
    "{{ nums + [4] }}", "{{ 2 ** 10 }}{{ 7 * 6 }}", "{{ ', '.join(names) }}",
    "{{ 'a-b'.replace('-', '+') }}{{ 'x'.ljust(3) }}|{{ 'a\tb'.expandtabs(4) }}",
    "{% for n in nums %}{{ loop.index }}/{{ loop.length }}:{{ n }} {% else %}none{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
    "{% for n in [] %}x{% else %}empty{% endfor %}",
    "{% for p in people if p.age > 36 %}{{ p.name }}{% endfor %}",
    "{% for x in [[1, [2]], [3]] recursive %}[{% if x is iterable %}{{ loop(x) }}"
    "{% else %}{{ x }}{% endif %}]{% endfor %}",
    "{% set a, b = 1, 2 %}{{ a + b }}", "{% set s %}{% for i in range(3) %}{{ i }}"
    "{% endfor %}{% endset %}{{ s }}", "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(1) ~ m(2) }}",
    "{{ range(5)|list }}{{ range(1, 9, 3)|list }}", "{{ dict(a=1, b=nums) }}",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_bounded_filters_and_operators_answer_as_jinjas_own(template: str) -> None:
    plain = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    expected = plain.from_string(template).render(**DATA)
    assert Sandbox().from_string(template).render(**DATA) == expected


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=" abcdefghij-\n", max_size=300), st.integers(1, 30),
       st.booleans(), st.booleans())
def test_wordwrap_wraps_as_jinja_does(text: str, width: int, long_words: bool,
                                      hyphens: bool) -> None:
    plain = ImmutableSandboxedEnvironment()
    expected = do_wordwrap(plain, text, width, long_words, None, hyphens)
    template = "{{ t|wordwrap(w, break_long_words=b, break_on_hyphens=h) }}"
    got = Sandbox().from_string(template).render(t=text, w=width, b=long_words, h=hyphens)
    assert got == expected


def test_size_counts_every_element_each_time_it_is_reached() -> None:
    inner = [1] * 1000
    assert size_of(inner, 10**9) == 1000
    assert size_of([inner] * 3, 10**9) == 3 + 3000
    assert size_of({"k": "abc", "l": inner}, 10**9) == 2 + 1 + 3 + 1 + 1000
    assert size_of("x" * 7, 10**9) == 7 and size_of(5, 10**9) == 1
    assert size_of([inner] * 10**6, 5000) > 5000  # and stops there


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False)
    | st.text(alphabet="abcxyz 01", max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(
        st.text(alphabet="abk", max_size=5), children, max_size=6),
    max_leaves=60)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_text_size_is_at_least_the_json_and_the_text(value: object) -> None:
    estimate = text_size(value, 10**9)
    assert estimate >= len(json.dumps(value))
    assert estimate >= len(str(value))


def test_text_size_counts_indentation() -> None:
    value = [[[1, 2], [3]], {"a": [4]}]
    assert text_size(value, 10**9, indent=4) >= len(json.dumps(value, indent=4))


NS = namespace(inputs={"big": "x" * (MAX_OUTPUT_CHARS + 1), "ok": "x" * 1000}, outputs={},
               run={})


@pytest.mark.parametrize(("template", "why"), [
    ("{{ '%(a)s%(a)s' % {'a': inputs.ok * 999} }}", "formatted text would exceed"),
    ("{{ ('x', 'y')|map('string')|list + [inputs.ok * 999] * 2 }}", "repetition would exceed"),
    ("{{ [inputs.ok * 600, inputs.ok * 600] }}", "list or dict would exceed"),
    ("{{ '%(a)s' * 3000 % {'a': inputs.ok} }}", "formatted text would exceed"),
    ("{{ '%*d' % (5, 1) }}", "format width"),
    ("{{ (['a'] * 2000)|join(inputs.ok) }}", "join would exceed"),
    ("{{ inputs.ok.join(['a'] * 2000) }}", "str.join would exceed"),
    ("{{ [[1] * 600000, [1] * 600000]|sum(start=[]) }}", "list or dict would exceed"),
    ("{% set l = [1] * 600000 %}{{ [l, l]|sum(start=[])|length }}", "list or dict"),
    ("{% set l = [1] * 600000 %}{{ [none, none]|map('default', l, true)|sum(start=[]) }}",
     "sum would exceed"),
    ("{{ inputs.big|upper }}", "|upper works on would exceed"),
    ("{{ (inputs.ok * 900) ~ (inputs.ok * 900) }}", "concatenation would exceed"),
    ("{{ (inputs.ok * 900) + (inputs.ok * 900) }}", "concatenation would exceed"),
    ("{{ (2 ** 40000) * (2 ** 40000) * (2 ** 40000) }}", "product is too large"),
    ("{{ 2 ** 100001 }}", "power result is too large"),
    ("{{ range(100001) }}", "range of 100,001 items"),
    ("{{ (inputs.ok * 101)|wordcount }}", "scans at most 100,000"),
    ("{{ inputs.ok|wordwrap(1, wrapstring=inputs.ok) }}", "wordwrap would exceed"),
    ("{{ [1, 2]|tojson(indent=999999) }}", "tojson would exceed"),
    ("{{ [[1, 2]]|pprint }}{{ (range(99999)|list)|pprint }}", "pprint would exceed"),
    ("{% for i in range(99999) %}{{ inputs.ok }}{% endfor %}", "rendered text would exceed"),
    ("{% set s %}{% for i in range(99999) %}{{ inputs.ok }}{% endfor %}{% endset %}{{ 1 }}",
     "64 MiB"),
])
def test_what_would_pass_a_limit_is_refused_naming_it(template: str, why: str) -> None:
    # Time enough that the size limit, not the clock, stops each one on a loaded machine
    with pytest.raises(ExpressionError) as info:
        Expressions(max_seconds=60).render(template, NS, field="f")
    assert why in str(info.value)
    assert info.value.kind == "LimitExceeded"


def test_sum_keeps_pythons_answers() -> None:
    ex = Expressions()
    assert ex.evaluate("[(1, 2), (3,)]|sum(start=())", NS, field="f") == (1, 2, 3)
    assert ex.evaluate("range(10000)|sum", NS, field="f") == sum(range(10000))
    for bad in ("['a', 'b']|sum(start='')", "[[1], 2]|sum(start=[])", "[[1]]|sum"):
        with pytest.raises(ExpressionError, match="TypeError"):
            ex.evaluate(bad, NS, field="f")


def test_wordwrap_of_a_long_word_is_checked_as_it_goes() -> None:
    ex = Expressions(max_seconds=0.02)
    with pytest.raises(ExpressionError, match=r"longer than 0\.02s"):  # quadratic: 4 GB copied
        ex.render("{{ ('x' * 90000)|wordwrap(1) }}", NS, field="f")
    assert ex.render("{{ 'abcdef'|wordwrap(2) }}", NS, field="f") == textwrap.fill(
        "abcdef", 2)


def test_time_is_the_threads_cpu_time_once_the_wall_clock_says_it_may_be_due() -> None:
    def budget(deadline: float, cpu_deadline: float | None = None,
               leave_at: float = float("inf")) -> Budget:
        made = Budget(0.5, deadline)
        made.cpu_deadline, made.leave_at = cpu_deadline, leave_at
        return made

    waited = budget(time.monotonic() - 1, time.thread_time() + 60)
    before = time.monotonic()
    waited.check_time()  # past the wall deadline, but the thread did not run that long
    after = time.monotonic()
    # With a minute of CPU left it looks again WORKER_YIELD_SECONDS after its check (it
    # yields the GIL each time). A busy machine once moved the clock past a look 2 ms away
    # before an assertion against the clock read after it.
    # clock-ok: bounded by the clock read around the call, not a threshold
    assert before + WORKER_YIELD_SECONDS <= waited.deadline <= after + WORKER_YIELD_SECONDS
    with pytest.raises(LimitExceeded, match=r"longer than 0\.5s"):
        budget(time.monotonic() - 1, time.thread_time() - 1).check_time()
    with pytest.raises(LeaveTheLoop):  # on the loop, any limit hands over to a worker
        budget(float("inf"), leave_at=time.monotonic() - 1).check_time()
    with pytest.raises(LimitExceeded):  # used without a node: wall time
        budget(time.monotonic() - 1).check_time()
