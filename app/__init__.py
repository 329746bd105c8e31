"""The Flowloom service: settings, stores, runner, CLI.

Names load on first use: the CLI imports this package, and `flowloom validate` needs
neither the runner nor LangGraph."""

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

_PUBLIC = {"RunRecord": "flowloom.app.records", "cancel_workflow": "flowloom.app.runner",
           "execute_workflow_async": "flowloom.app.runner",
           "resume_workflow": "flowloom.app.runner", "run_workflow": "flowloom.app.runner"}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'flowloom.app' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["RunRecord", "cancel_workflow", "execute_workflow_async", "resume_workflow",
           "run_workflow"]
