"""The Flowloom service: settings, stores, runner, CLI."""

from app.records import RunRecord
from app.runner import execute_workflow_async, run_workflow

__all__ = ["RunRecord", "execute_workflow_async", "run_workflow"]
