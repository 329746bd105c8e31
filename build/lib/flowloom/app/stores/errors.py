"""Errors of the stores."""

from __future__ import annotations

from flowloom.graphs.errors import WorkflowError


class StoreError(WorkflowError):
    """The store could not read or write."""
