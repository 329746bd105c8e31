"""Errors of the stores."""

from __future__ import annotations

from flowloom.graphs.errors import WorkflowError
from flowloom.graphs.redact import redact_text


class StoreError(WorkflowError):
    """The store could not read or write. Its message names the store by its URL with
    the password (and query values) hidden: it reaches `/health`, 503 answers and logs."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_text(message))


class LeaseLost(StoreError):
    """A fenced write found the run written by someone else since: another process
    took it over, and this one must stop."""
