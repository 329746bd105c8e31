"""The run viewer under /ui: one HTML shell per page and its static files. The pages hold
no data: their scripts read everything from the HTTP API with the caller's key."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).parent
SHELL = (HERE / "templates" / "shell.html").read_text(encoding="utf-8")
router = APIRouter(include_in_schema=False)


def _page(page: str, title: str, ident: str = "") -> HTMLResponse:
    body = (SHELL.replace("{{page}}", page).replace("{{title}}", html.escape(title))
            .replace("{{id}}", html.escape(ident, quote=True)))
    # The shell is the same for every key; data never passes through it.
    return HTMLResponse(body, headers={"Cache-Control": "no-cache"})


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui")
async def runs_page() -> HTMLResponse:
    return _page("runs", "Runs")


@router.get("/ui/runs/{execution_id}")
async def run_page(execution_id: str) -> HTMLResponse:
    return _page("run", f"Run {execution_id}", execution_id)


@router.get("/ui/inbox")
async def inbox_page() -> HTMLResponse:
    return _page("inbox", "Approvals inbox")


@router.get("/ui/workflows")
async def workflows_page() -> HTMLResponse:
    return _page("workflows", "Workflows")


@router.get("/ui/workflows/{workflow_id}")
async def workflow_page(workflow_id: str) -> HTMLResponse:
    return _page("workflow", f"Workflow {workflow_id}", workflow_id)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

