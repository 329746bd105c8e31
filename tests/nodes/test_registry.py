"""What the node registry declares about each type matches what its code does."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from flowloom.nodes.registry import NODE_TYPES

EXPRESSION_METHODS = frozenset({"render", "evaluate", "evaluate_each"})


def _awaits_an_expression(node: ast.AST) -> bool:
    """`await ctx.render(...)`, `await ctx.evaluate(...)` or `await ctx.evaluate_each(...)`."""
    call = getattr(node, "value", None)
    func = getattr(call, "func", None)
    return (isinstance(node, ast.Await) and isinstance(call, ast.Call)
            and isinstance(func, ast.Attribute) and func.attr in EXPRESSION_METHODS
            and isinstance(func.value, ast.Name) and func.value.id == "ctx")


def test_awaiting_an_expression_is_told_apart_from_other_awaits() -> None:
    def first_await(source: str) -> ast.AST:
        return next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Await))

    assert _awaits_an_expression(first_await("async def f(ctx): await ctx.render(1)"))
    assert not _awaits_an_expression(first_await("async def f(ctx): await ctx.sleep(1)"))
    assert not _awaits_an_expression(first_await("async def f(x): await x.render(1)"))


@pytest.mark.parametrize("name", sorted(NODE_TYPES))
def test_a_type_that_never_waits_has_no_await_in_its_run(name: str) -> None:
    kind = NODE_TYPES[name]
    if kind.expands:
        pytest.skip("expanded by the compiler; it has no single-step run")
    tree = ast.parse(textwrap.dedent(inspect.getsource(type(kind).run)))
    awaits = any(isinstance(node, ast.Await | ast.AsyncFor | ast.AsyncWith)
                 and not _awaits_an_expression(node) for node in ast.walk(tree))
    # No timer is armed for a type that does not wait: one that awaits must say so.
    # Its expressions may leave the event loop, within their own time budget.
    assert kind.waits == awaits, f"`{name}`: waits={kind.waits} but its run " + (
        "awaits" if awaits else "never awaits")
