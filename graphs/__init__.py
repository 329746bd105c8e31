"""The compiler: format models, validation, expressions and compilation. Pure, no I/O."""

from graphs.compile import compile_workflow
from graphs.errors import (
    CompileError,
    ExpressionError,
    InputError,
    NodeError,
    Problem,
    SpecError,
    WorkflowError,
)
from graphs.expressions import Expressions
from graphs.loader import canonical_document, load_workflow, read_document, validate_workflow
from graphs.spec import EdgeSpec, NodeSpec, WorkflowSpec

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
