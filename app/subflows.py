"""Child runs of `subworkflow` nodes, linked both ways to their parent run."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from flowloom.app.lifecycle import cancel_child
from flowloom.app.logs import correlation_id
from flowloom.app.records import RunRecord
from flowloom.app.stores.base import Store
from flowloom.graphs.errors import NodeError
from flowloom.nodes.services import Services

MAX_SUBWORKFLOW_DEPTH = 8  # child runs below a root run; a self-calling workflow stops here
COUNTED_ROOTS = 1024  # root runs whose descendants a process counts in memory


class Subflows:
    def __init__(self, store: Store, services: Services, execute: Callable[..., Any],
                 resume: Callable[..., Any]) -> None:
        self.store = store
        self.services = services
        self.execute = execute
        self.resume = resume
        # Descendants per root run, counted from the store once, then as children start
        # here: a run's whole tree is driven by the process that owns its root.
        self._descendants: OrderedDict[str, int] = OrderedDict()
        self._counting = asyncio.Lock()

    async def run(self, *, parent_execution_id: str, node_path: str, workflow_id: str | None,
                  version: int | None, workflow: dict[str, Any] | None,
                  inputs: dict[str, Any]) -> tuple[Any, str]:
        child_id = f"{parent_execution_id}.{node_path}"
        common = {"store": self.store, "services": self.services}
        record = await self.store.get_run(child_id)
        try:
            if record is None:
                root = await self._check_depth(parent_execution_id)
                document = workflow
                if document is None:
                    stored = await self.store.get_workflow(workflow_id or "", version)
                    if stored is None:
                        which = f"`{workflow_id}`" + (f" version {version}" if version else "")
                        raise NodeError(f"no stored workflow {which}", kind="NotFound")
                    document = stored.document
                await self._count_child(root)
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

    async def _check_depth(self, parent_execution_id: str) -> str:
        """Refuse a child run more than MAX_SUBWORKFLOW_DEPTH levels below its root run;
        return the root run's id."""
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
        return chain[-1].execution_id if chain else parent_execution_id

    async def _count_child(self, root: str) -> None:
        """Refuse a child run past FLOWLOOM_MAX_DESCENDANT_RUNS under one root run: depth
        alone lets a wide tree (a loop of self-calls) multiply without bound."""
        limit = self.services.settings.max_descendant_runs
        async with self._counting:
            count = self._descendants.pop(root, None)
            if count is None:
                count = await self.store.count_descendants(root)
            if count >= limit:
                self._descendants[root] = count
                raise NodeError(f"run `{root}` has {count:,} child runs, the limit "
                                f"(FLOWLOOM_MAX_DESCENDANT_RUNS={limit:,}) on the subworkflow "
                                "runs below one root run", kind="LimitExceeded")
            self._descendants[root] = count + 1
            while len(self._descendants) > COUNTED_ROOTS:  # counted again when next needed
                self._descendants.popitem(last=False)

    async def _cancel(self, child_id: str, parent_execution_id: str) -> None:
        """The child's own drive stopped without a word when its parent's did: cancel its
        record, so no child is left `running` (its own children cancelled theirs first)."""
        await cancel_child(self.store, child_id, parent_execution_id)
