"""The Flowloom service: settings, stores, runner, CLI."""

from flowloom.app.records import RunRecord
from flowloom.app.runner import (
           cancel_workflow,
           execute_workflow_async,
           resume_workflow,
           run_workflow,
)

__all__ = ["RunRecord", "cancel_workflow", "execute_workflow_async", "resume_workflow",
           "run_workflow"]
