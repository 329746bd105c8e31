"""Where the sandbox puts the node's budget into a parsed template (see budget.py).

Each `{% for %}` pass checks the time and charges the loop body's literal text; `~`
checks the size of the text it joins; a list, tuple or dict written with values that
are not constants checks its size (`[x, x, x]` counts x three times), and every
`{{ ... }}` of a template checks the text it becomes (Jinja's `finalize`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jinja2 import nodes
from jinja2.runtime import str_join
from jinja2.visitor import NodeTransformer

from flowloom.graphs.budget import bytes_of, current, paced, size_of, text_size

_LOOP, _CONCAT, _LITERAL = "_flowloom_loop", "_flowloom_concat", "_flowloom_literal"


def _loop(values: Any, per_pass: int) -> Iterator[Any]:
    return paced(values, per_pass)


def _concat(*parts: Any) -> str:
    budget = current()
    size = 0
    for part in parts:
        size += len(part) if isinstance(part, str) else text_size(part, budget.max_chars)
        budget.check_size(size, "concatenation")
    budget.charge(size, "concatenation")
    return str_join(parts)


def _literal(value: Any) -> Any:
    """A list or dict written in the template: the values it holds may be shared, so its
    size counts each of them (`[x, x, x]` is three times x)."""
    budget = current()
    budget.check_size(size_of(value, budget.max_chars), "list or dict")
    return value


def finalize(value: Any) -> Any:
    """Every `{{ ... }}` of a template, before it becomes text."""
    budget = current()
    if not isinstance(value, str):
        budget.check_size(text_size(value, budget.max_chars), "output")
    budget.charge(bytes_of(value), "output")
    return value


class _Instrument(NodeTransformer):
    """Puts the budget into the parsed template: each `{% for %}` pass checks the time
    and charges the loop body's literal text; `~` and literals check their size."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        per_pass = sum(len(data.data) for data in node.find_all(nodes.TemplateData))
        node.iter = nodes.Filter(node.iter, _LOOP, [nodes.Const(per_pass)], [], None, None,
                                 lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        first, *rest = node.nodes
        return nodes.Filter(first, _CONCAT, rest, [], None, None, lineno=node.lineno)

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":
            return node  # a target: `{% for a, b in ... %}`, `{% set a, b = ... %}`
        values = [child.value if isinstance(child, nodes.Pair) else child
                  for child in node.iter_child_nodes()]
        if all(isinstance(value, nodes.Const) for value in values):
            return node  # constants only: no larger than the template's text
        return nodes.Filter(node, _LITERAL, [], [], None, None, lineno=node.lineno)

    visit_List = visit_Tuple = visit_Dict = _literal




INSTRUMENT_FILTERS = {_LOOP: _loop, _CONCAT: _concat, _LITERAL: _literal}


def instrument(template: nodes.Template) -> nodes.Template:
    result: nodes.Template = _Instrument().visit(template)
    return result
