"""workflows list, push and show: the stored workflows, through the store's workflow API
as the HTTP routes use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowloom.app.cli.common import (
    JsonFlag,
    configured,
    err,
    fail,
    out,
    read_file,
    run_sync,
    with_store,
)
from flowloom.app.cli.render import print_table, table
from flowloom.graphs import SpecError

if TYPE_CHECKING:
    from flowloom.app.stores import Store
    from flowloom.app.stores.base import StoredWorkflow

PAGE = 200


async def _all(store: Store) -> list[StoredWorkflow]:
    found: list[StoredWorkflow] = []
    while True:
        page = await store.list_workflows(limit=PAGE, offset=len(found))
        found += page
        if len(page) < PAGE:
            return found


def list_workflows(as_json: JsonFlag = False) -> None:
    """The stored workflows, each at its latest version."""
    stored = run_sync(with_store(configured(), _all))
    items = [{"id": w.id, "name": w.document.get("name"), "version": w.version,
              "updated_at": w.created_at.isoformat()} for w in stored]
    if as_json:
        print(json.dumps(items))
        return
    grid = table("id", "name", "version", "updated")
    for w in stored:
        grid.add_row(w.id, str(w.document.get("name") or ""), str(w.version),
                     w.created_at.isoformat(timespec="seconds"))
    print_table(grid)


async def _push(store: Store, document: dict[str, Any]) -> tuple[StoredWorkflow, bool]:
    from flowloom.app.runner import workflow_id_of
    from flowloom.app.workflows import load_workflow

    spec = load_workflow(document)
    canonical = spec.model_dump(mode="json", exclude_none=True)
    # No id: the content's own, as `flowloom run` stores it, so pushing again is a no-op.
    workflow_id = workflow_id_of(spec, canonical)
    before = await store.get_workflow(workflow_id)
    stored = await store.put_workflow(workflow_id, {**canonical, "id": workflow_id})
    return stored, before is None or before.version != stored.version


def push(file: Path, as_json: JsonFlag = False) -> None:
    """Store the workflow as a new version (identical content: the existing version)."""
    document = read_file(file)
    settings = configured()
    try:
        stored, new = run_sync(with_store(settings, lambda s: _push(s, document)))
    except SpecError as exc:
        for problem in exc.problems:
            if problem.level == "error":
                err.print(f"{file}: {problem}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"id": stored.id, "version": stored.version, "new": new}))
    elif new:
        out.print(f"stored workflow {stored.id} version {stored.version}", markup=False)
    else:
        out.print(f"workflow {stored.id} version {stored.version} unchanged (identical "
                  "content)", markup=False)


def show(workflow_id: str,
         version: Annotated[int | None, typer.Option("--version", min=1,
                                                     max=2**31 - 1)] = None,
         as_json: JsonFlag = False) -> None:
    """One stored workflow: the latest version, or --version N."""
    stored = run_sync(with_store(configured(),
                                 lambda s: s.get_workflow(workflow_id, version)))
    if stored is None:
        which = f" version {version}" if version else ""
        raise fail(f"no workflow `{workflow_id}`{which}", 1)
    if as_json:
        print(json.dumps(stored.document))
        return
    document = stored.document
    out.print(f"workflow {stored.id} version {stored.version}, stored "
              f"{stored.created_at.isoformat(timespec='seconds')}", markup=False)
    for key in ("name", "description"):
        if document.get(key):
            out.print(f"{key}: {document[key]}", markup=False)
    grid = table("node", "type", "name")
    for node in document.get("nodes", []):
        grid.add_row(node["id"], node["type"], node.get("name") or "")
    print_table(grid)
    for edge in document.get("edges", []):
        branch = f" [{edge['branch']}]" if edge.get("branch") else ""
        out.print(f"{edge['source']} -> {edge['target']}{branch}", markup=False)
