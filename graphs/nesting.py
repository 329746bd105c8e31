"""How deeply a template nests, checked before Jinja's recursive parser, code generator
and Python's compiler see it: past Python's recursion limit they crash the validator
with a RecursionError (a hostile `(((...)))` of 70 levels did), and that limit shrinks
with whatever is already on the stack. Both checks here are loops, never recursive."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jinja2 import nodes

MAX_NESTING = 32  # brackets, open blocks and unary operators in a row, all counted together
MAX_LOOP_NESTING = 16  # `{% for %}` in `{% for %}`: Python compiles at most 20 nested loops
MAX_TREE_DEPTH = 96  # of the parsed template: operator chains, filters, attributes...

_OPEN, _CLOSE = frozenset("([{"), frozenset(")]}")
_UNARY = frozenset({("operator", "-"), ("operator", "+"), ("name", "not")})
_BLOCKS = frozenset({"if", "for", "macro", "call", "filter", "with", "block", "autoescape",
                     "raw"})


def token_nesting_problem(tokens: Iterable[tuple[int, str, str]]) -> str | None:
    """Why a template's tokens (`Environment.lex`) nest too deeply for the parser."""
    brackets = unary = 0
    blocks: list[str] = []  # the block tags open, innermost last
    statement: list[str] = []  # names and `=` of the block tag being read
    for lineno, kind, value in tokens:
        if kind == "whitespace":
            continue
        unary = unary + 1 if (kind, value) in _UNARY else 0
        if kind == "operator" and value in _OPEN:
            brackets += 1
        elif kind == "operator" and value in _CLOSE:
            brackets = max(0, brackets - 1)
        if kind == "block_begin":
            statement = [""]
        elif statement == [""] and kind == "name":
            statement = [value]
            if value in _BLOCKS:
                blocks.append(value)
            elif value.startswith("end") and blocks:
                blocks.pop()
        elif statement and kind == "operator" and value == "=":
            statement.append("=")
        elif kind == "block_end":
            if statement[:1] == ["set"] and "=" not in statement:  # `{% set x %}...{% endset %}`
                blocks.append("set")
            statement = []
        if brackets + len(blocks) + unary > MAX_NESTING:
            return (f"nested more than {MAX_NESTING} levels deep at line {lineno} (brackets, "
                    "blocks and unary operators, counted together)")
        if blocks.count("for") > MAX_LOOP_NESTING:
            return (f"more than {MAX_LOOP_NESTING} `{{% for %}}` loops nested in each other "
                    f"at line {lineno}")
    return None


def tree_depth_problem(tree: nodes.Node) -> str | None:
    """Why a parsed template is too deep to generate and compile code for."""
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            return (f"nested more than {MAX_TREE_DEPTH} levels deep at line "
                    f"{getattr(node, 'lineno', '?')} (a chain of operators, filters or "
                    "attributes that long: split it with {% set %})")
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return None
