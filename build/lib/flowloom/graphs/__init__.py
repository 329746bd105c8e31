"""The compiler: format models, validation, expressions and compilation. Pure, no I/O.

`compile_workflow`, `load_workflow` and `validate_workflow` take the node-type registry as
an argument here (in their modules); `flowloom` exports them with Flowloom's own types.
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
    "read_document",
]
