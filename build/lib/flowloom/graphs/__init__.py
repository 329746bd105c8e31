"""The compiler: format models, validation, expressions and compilation. Pure, no I/O.

Names that need the node registry load on first use, so `nodes` can import `graphs.errors`
and `graphs.expressions` without a cycle.
"""

from typing import Any

from flowloom.graphs.errors import (
    CompileError,
    ExpressionError,
    InputError,
    NodeError,
    Problem,
    SpecError,
    WorkflowError,
)
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.spec import EdgeSpec, NodeSpec, WorkflowSpec

_LAZY = {
    "compile_workflow": "flowloom.graphs.compile",
    "load_workflow": "flowloom.graphs.loader",
    "validate_workflow": "flowloom.graphs.loader",
    "canonical_document": "flowloom.graphs.loader",
    "read_document": "flowloom.graphs.loader",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flowloom.graphs' has no attribute {name!r}")


__all__ = [
    "CompileError",
    "EdgeSpec",
    "ExpressionError",
    "Expressions",
    "InputError",
    "NodeError",
    "NodeSpec",
    "Problem",
    "SpecError",
    "WorkflowError",
    "WorkflowSpec",
    "canonical_document",
    "compile_workflow",
    "load_workflow",
    "read_document",
    "validate_workflow",
]
