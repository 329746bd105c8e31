"""What every store backend offers: workflows (every version), run records, checkpoints."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from langgraph.checkpoint.base import BaseCheckpointSaver

from app.records import RunRecord


@dataclass(frozen=True, slots=True)
class StoredWorkflow:
    id: str
    version: int
    document: dict[str, Any]
    created_at: datetime


class Store(Protocol):
    async def put_workflow(self, workflow_id: str, document: dict[str, Any]) -> StoredWorkflow:
        """Store `document` as the next version, unless the latest version is identical."""

    async def get_workflow(self, workflow_id: str,
                           version: int | None = None) -> StoredWorkflow | None: ...

    async def save_run(self, record: RunRecord) -> None: ...

    async def get_run(self, execution_id: str) -> RunRecord | None: ...

    async def list_runs(self, *, workflow_id: str | None = None, status: str | None = None,
                        limit: int = 50) -> list[RunRecord]: ...

    def checkpointer(self) -> AbstractAsyncContextManager[BaseCheckpointSaver[Any]]:
        """The LangGraph checkpoint saver of this backend, open for the block."""

    async def close(self) -> None: ...
