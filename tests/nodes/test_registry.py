"""What the node registry declares about each type matches what its code does."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from flowloom.nodes.registry import NODE_TYPES


@pytest.mark.parametrize("name", sorted(NODE_TYPES))
def test_a_type_that_never_waits_has_no_await_in_its_run(name: str) -> None:
    kind = NODE_TYPES[name]
    if kind.expands:
        pytest.skip("expanded by the compiler; it has no single-step run")
    tree = ast.parse(textwrap.dedent(inspect.getsource(type(kind).run)))
    awaits = any(isinstance(node, ast.Await | ast.AsyncFor | ast.AsyncWith)
                 for node in ast.walk(tree))
    # No timer is armed for a type that does not wait: one that awaits must say so.
    assert kind.waits == awaits, f"`{name}`: waits={kind.waits} but its run " + (
        "awaits" if awaits else "never awaits")
