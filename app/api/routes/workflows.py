"""Workflows: create (any dialect), list, get by version, new version, delete, validate,
graph."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from flowloom.app.api.deps import StoreDep
from flowloom.app.api.errors import ApiError
from flowloom.app.stores.base import same_document
from flowloom.app.workflows import load_workflow, to_mermaid, validate_workflow
from flowloom.graphs import WorkflowSpec, canonical_document

router = APIRouter(prefix="/workflows", tags=["workflows"])
Document = Body(..., description="A workflow document in any accepted dialect")


class Stored(BaseModel):
    id: str
    version: int


class WorkflowSummary(BaseModel):
    id: str
    name: str | None
    version: int
    updated_at: str


class WorkflowPage(BaseModel):
    items: list[WorkflowSummary]
    next_offset: int | None


class Validation(BaseModel):
    valid: bool
    problems: list[dict[str, str]]


def _new_id(document: dict[str, Any]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(document.get("name") or "workflow").lower())
    return f"{slug.strip('-')[:50] or 'workflow'}-{uuid.uuid4().hex[:8]}"


def _canonical(document: dict[str, Any]) -> dict[str, Any]:
    spec: WorkflowSpec = load_workflow(document)  # SpecError -> 422 with every problem
    return spec.model_dump(mode="json", exclude_none=True)


@router.post("", status_code=201, response_model=Stored)
async def create_workflow(store: StoreDep, response: Response,
                          document: dict[str, Any] = Document) -> Stored:
    canonical = _canonical(document)
    workflow_id = canonical.get("id") or _new_id(canonical)
    latest = await store.get_workflow(workflow_id)
    if latest is not None and same_document(latest.document, canonical):
        response.status_code = 200  # the same content again: nothing new to store
        return Stored(id=latest.id, version=latest.version)
    if latest is not None:
        raise ApiError(409, "Conflict", f"workflow `{workflow_id}` exists; PUT a new version")
    stored = await store.put_workflow(workflow_id, {**canonical, "id": workflow_id})
    response.headers["Location"] = f"/workflows/{workflow_id}"
    return Stored(id=stored.id, version=stored.version)


@router.get("", response_model=WorkflowPage)
async def list_workflows(store: StoreDep, limit: int = Query(50, ge=1, le=200),
                         offset: int = Query(0, ge=0, le=10**9)) -> WorkflowPage:
    found = await store.list_workflows(limit=limit + 1, offset=offset)
    items = [WorkflowSummary(id=w.id, name=w.document.get("name"), version=w.version,
                             updated_at=w.created_at.isoformat()) for w in found[:limit]]
    return WorkflowPage(items=items, next_offset=offset + limit if len(found) > limit else None)


@router.post("/validate", response_model=Validation)
async def validate(document: dict[str, Any] = Document) -> Validation:
    problems = validate_workflow(document, include_warnings=True)
    return Validation(valid=not any(p.level == "error" for p in problems),
                      problems=[p.as_dict() for p in problems])


@router.get("/{workflow_id}")
async def get_workflow(workflow_id: str, store: StoreDep,
                       version: int | None = Query(None, ge=1, le=2**31 - 1)) -> dict[str, Any]:
    stored = await store.get_workflow(workflow_id, version)
    if stored is None:
        which = f" version {version}" if version else ""
        raise ApiError(404, "Not found", f"no workflow `{workflow_id}`{which}")
    return stored.document


@router.put("/{workflow_id}", response_model=Stored)
async def new_version(workflow_id: str, store: StoreDep,
                      document: dict[str, Any] = Document) -> Stored:
    canonical = _canonical({**canonical_document(document)[1], "id": workflow_id})
    stored = await store.put_workflow(workflow_id, canonical)
    return Stored(id=stored.id, version=stored.version)


@router.delete("/{workflow_id}", status_code=204)
async def delete_workflow(workflow_id: str, store: StoreDep) -> Response:
    if not await store.delete_workflow(workflow_id):
        raise ApiError(404, "Not found", f"no workflow `{workflow_id}`")
    return Response(status_code=204)


@router.get("/{workflow_id}/graph", response_class=PlainTextResponse)
async def graph(workflow_id: str, store: StoreDep,
                version: int | None = Query(None, ge=1, le=2**31 - 1)) -> str:
    stored = await store.get_workflow(workflow_id, version)
    if stored is None:
        raise ApiError(404, "Not found", f"no workflow `{workflow_id}`")
    return to_mermaid(load_workflow(stored.document))
