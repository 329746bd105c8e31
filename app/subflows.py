"""Child runs of `subworkflow` nodes, linked both ways to their parent run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from flowloom.app.logs import correlation_id
from flowloom.app.records import RunRecord, mark_cancelled
from flowloom.app.stores.base import Store
from flowloom.graphs.errors import NodeError
from flowloom.nodes.services import Services

MAX_SUBWORKFLOW_DEPTH = 8  # child runs below a root run; a self-calling workflow stops here


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
        try:
            if record is None:
                await self._check_depth(parent_execution_id)
                document = workflow
                if document is None:
                    stored = await self.store.get_workflow(workflow_id or "", version)
                    if stored is None:
                        which = f"`{workflow_id}`" + (f" version {version}" if version else "")
                        raise NodeError(f"no stored workflow {which}", kind="NotFound")
                    document = stored.document
                # The parent's correlation id (bound while it runs): one id for the tree.
                record = await self.execute(document, inputs, execution_id=child_id,
                                            parent_execution_id=parent_execution_id,
                                            correlation_id=correlation_id.get(), **common)
            elif record.status in ("running", "queued", "failed"):  # the parent is resuming
                # A `running` child ran in the parent's process, which stopped: take it over.
                record = await self.resume(child_id, take_over=True, force=True, **common)
        except asyncio.CancelledError:  # the parent was cancelled or timed out
            await self._cancel(child_id, parent_execution_id)
            raise
        assert record is not None
        if record.status != "succeeded":
            why = record.errors[0].message if record.errors else record.status
            if record.status == "waiting":
                why = "it waits for an approval, which subworkflows do not pass up yet"
            raise NodeError(f"child run `{child_id}` {record.status}: {why}",
                            kind="SubworkflowFailed")
        return record.output, child_id

    async def _check_depth(self, parent_execution_id: str) -> None:
        """Refuse a child run more than MAX_SUBWORKFLOW_DEPTH levels below its root run."""
        chain: list[RunRecord] = []
        run_id: str | None = parent_execution_id
        while run_id is not None and len(chain) <= MAX_SUBWORKFLOW_DEPTH:
            parent = await self.store.get_run(run_id)
            if parent is None:
                break
            chain.append(parent)
            run_id = parent.parent_execution_id
        if len(chain) > MAX_SUBWORKFLOW_DEPTH:
            names = " > ".join(f"`{r.workflow_id}`" for r in reversed(chain))
            raise NodeError(f"subworkflows nest at most MAX_SUBWORKFLOW_DEPTH="
                            f"{MAX_SUBWORKFLOW_DEPTH} levels deep; chain: {names} > ...",
                            kind="LimitExceeded")

    async def _cancel(self, child_id: str, parent_execution_id: str) -> None:
        """The child's own drive stopped without a word when its parent's did: cancel its
        record, so no child is left `running` (its own children cancelled theirs first)."""
        child = await self.store.get_run(child_id)
        if child is not None and not child.finished:
            by = await self._cancelled_by(parent_execution_id)
            mark_cancelled(child, f"parent {parent_execution_id}" if by is None else by)
            await self.store.request_cancel(child_id, child.cancelled_by or "")
            await self.store.save_run(child)

    async def _cancelled_by(self, run_id: str | None) -> str | None:
        """Who cancelled the nearest ancestor that was cancelled (none when it timed out)."""
        while run_id is not None:
            by = await self.store.cancel_requested(run_id)
            if by is not None:
                return by
            record = await self.store.get_run(run_id)
            run_id = record.parent_execution_id if record else None
        return None
