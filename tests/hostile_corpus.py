"""Hostile workflows: the payloads of issue #11 (and more), each a one-node document that
must fail its node with a message naming the limit, never freeze the event loop.

`slow` payloads run until a time budget stops them: while they do, the event loop must
keep serving others. The rest are refused before they allocate, at once.
Shared by tests/app/test_hostile_corpus.py and bench/bench_hostile.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Payload:
    name: str
    node: dict[str, Any]  # the one node of the document, id `evil`
    expect: str  # in the node's error message
    slow: bool = False  # stopped by a time budget (the others by a size limit, at once)
    inputs: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {"id": f"hostile-{self.name}", "nodes": [self.node]}


def transform(output: Any) -> dict[str, Any]:
    return {"id": "evil", "type": "transform", "config": {"output": output}}


def condition(expression: str) -> dict[str, Any]:
    return {"id": "evil", "type": "condition", "config": {"expression": expression}}


BIG_LIST = list(range(20_000))  # 120 KB of JSON: accepted as inputs

PAYLOADS = [
    Payload("nested-for", transform(
        "{% for a in inputs.big %}{% for b in inputs.big %}{% endfor %}{% endfor %}"),
        "longer than", slow=True, inputs={"big": BIG_LIST}),
    Payload("map-sum-of-shared-lists", condition("([[1]*1000000]*3000)|map('sum')|sum"),
            "would exceed 1,000,000"),
    Payload("filter-slow-condition", {"id": "evil", "type": "filter", "config": {
        "items": "range(2000)|list",
        "condition": "(range(20000)|map('string')|join)|length > item"}},
        "longer than", slow=True),
    Payload("wordwrap-1", transform("{{ ('x' * 1000000)|wordwrap(1) }}"),
            "|wordwrap scans at most 100,000 characters"),
    Payload("integer-squared", transform(
        "{{ (2**49999) * (2**49999) * (2**49999) * (2**49999) }}"), "product is too large"),
    Payload("percent-repeat", transform(
        "{{ '%(a)s' * 3000 % {'a': 'x' * 100000} }}"), "formatted text would exceed"),
    Payload("format-by-subscript", transform("{{ ('{0:>2000000000}')['format'](1) }}"),
            "not allowed in the sandbox"),
    Payload("format-method", transform("{{ '{0:>2000000000}'.format(1) }}"),
            "not allowed in the sandbox"),
    Payload("format-by-attr", transform("{{ ('{0:>2000000000}'|attr('format'))(1) }}"),
            "not allowed in the sandbox"),
    Payload("format-by-map", transform(
        "{{ ['{0:>2000000000}']|map(attribute='format')|map('string')|list }}"),
        "not allowed in the sandbox"),
    Payload("tilde-concat", transform(
        "{% set s = 'x' * 1000000 %}{{ s ~ s }}"), "concatenation would exceed"),
    Payload("string-of-list", transform("{{ ('ab' * 400000)|list|string }}"),
            "|string works on would exceed"),
    Payload("tojson-of-list", transform("{{ ('ab' * 400000)|list|tojson }}"),
            "|tojson works on would exceed"),
    Payload("pprint-of-list", transform("{{ ('ab' * 400000)|list|pprint }}"),
            "|pprint works on would exceed"),
    Payload("join-of-copies", transform(
        "{{ (['x' * 1000] * 999)|join }}{{ (['x' * 100000] * 999)|join }}"),
        "would exceed"),
    Payload("shared-literal", transform(
        "{% set a = [1] * 600000 %}{{ [a, a]|length }}"), "list or dict would exceed"),
    Payload("churn", transform(
        "{% for i in range(1000) %}{{ ('x' * 999999)|upper|length }}{% endfor %}"), "MiB"),
    Payload("block-set-of-loop", transform(
        "{% set x %}{% for i in range(100000) %}" + "y" * 2000 + "{% endfor %}{% endset %}"
        "{{ x|length }}"), "MiB"),
    Payload("ljust", transform("{{ 'x'.ljust(999999999) }}"), "ljust width would exceed"),
    Payload("power", transform("{{ 9 ** 999999 }}"), "power result is too large"),
    Payload("wordcount-of-much", transform("{{ ('ab ' * 40000)|wordcount }}"),
            "scans at most 100,000"),
    Payload("sort-many", transform("{{ ('ab' * 100001)|list|sort|first }}"),
            "exceeds 100,000"),
    Payload("python-heavy-filter", transform(
        "{% for i in range(100000) %}{{ (range(3000)|list|string)|title|length }}"
        "{% endfor %}"), "longer than", slow=True),
    Payload("macro-fork-bomb", transform(
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}"), "longer than", slow=True),
    Payload("range-range", transform(
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}"
        "{% endfor %}"), "limit exceeded", slow=True),
]
