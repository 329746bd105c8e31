"""Child runs of `subworkflow` nodes, linked both ways to their parent run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowloom.app.stores.base import Store
from flowloom.graphs.errors import NodeError
from flowloom.nodes.services import Services


class Subflows:
    def __init__(self, store: Store, services: Services, execute: Callable[..., Any],
                 resume: Callable[..., Any]) -> None:
        self.store = store
        self.services = services
        self.execute = execute
        self.resume = resume

    async def run(self, *, parent_execution_id: str, node_path: str, workflow_id: str | None,
                  version: int | None, workflow: dict[str, Any] | None,
                  inputs: dict[str, Any]) -> tuple[Any, str]:
        child_id = f"{parent_execution_id}.{node_path}"
        common = {"store": self.store, "services": self.services}
        record = await self.store.get_run(child_id)
        if record is None:
            document = workflow
            if document is None:
                stored = await self.store.get_workflow(workflow_id or "", version)
                if stored is None:
                    which = f"`{workflow_id}`" + (f" version {version}" if version else "")
                    raise NodeError(f"no stored workflow {which}", kind="NotFound")
                document = stored.document
            record = await self.execute(document, inputs, execution_id=child_id,
                                        parent_execution_id=parent_execution_id, **common)
        elif record.status in ("running", "queued", "failed"):  # the parent is resuming
            # A `running` child ran in the parent's process, which stopped: take it over.
            record = await self.resume(child_id, take_over=True, **common)
        if record.status != "succeeded":
            why = record.errors[0].message if record.errors else record.status
            if record.status == "waiting":
                why = "it waits for an approval, which subworkflows do not pass up yet"
            raise NodeError(f"child run `{child_id}` {record.status}: {why}",
                            kind="SubworkflowFailed")
        return record.output, child_id
