"""The Flowloom service: settings, stores, runner, CLI."""

from app.records import RunRecord
from app.runner import cancel_workflow, execute_workflow_async, resume_workflow, run_workflow

__all__ = ["RunRecord", "cancel_workflow", "execute_workflow_async", "resume_workflow",
           "run_workflow"]
