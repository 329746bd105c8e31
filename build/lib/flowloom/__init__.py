"""Flowloom's public Python API.

Names load on first use, so `import flowloom` (and with it every CLI command) does not pay
for the service, the HTTP stack or the model clients it may never need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowloom.app.records import RunRecord
    from flowloom.app.runner import (
        cancel_workflow,
        execute_workflow_async,
        resume_workflow,
        run_workflow,
    )
    from flowloom.app.workflows import compile_workflow, load_workflow, validate_workflow
    from flowloom.graphs.errors import SpecError, WorkflowError

_PUBLIC = {
    "run_workflow": "flowloom.app.runner",
    "execute_workflow_async": "flowloom.app.runner",
    "resume_workflow": "flowloom.app.runner",
    "cancel_workflow": "flowloom.app.runner",
    "RunRecord": "flowloom.app.records",
    "load_workflow": "flowloom.app.workflows",
    "validate_workflow": "flowloom.app.workflows",
    "compile_workflow": "flowloom.app.workflows",
    "SpecError": "flowloom.graphs.errors",
    "WorkflowError": "flowloom.graphs.errors",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'flowloom' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "RunRecord",
    "SpecError",
    "WorkflowError",
    "cancel_workflow",
    "compile_workflow",
    "execute_workflow_async",
    "load_workflow",
    "resume_workflow",
    "run_workflow",
    "validate_workflow",
]
