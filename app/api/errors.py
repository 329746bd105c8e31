"""Every error as an RFC 9457 problem document, from one place."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from flowloom.app.runner import AnswerError, NotResumable, RunNotFound
from flowloom.app.stores.base import InvalidCursor
from flowloom.app.stores.errors import StoreError
from flowloom.graphs.errors import InputError, SpecError, WorkflowError

PROBLEM = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem document; validation problems carry JSON paths."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    problems: list[dict[str, str]] | None = None


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem_response("Malformed request"),
    401: _problem_response("Missing or wrong API key"),
    404: _problem_response("Not found"),
    409: _problem_response("Conflict with the current state"),
    413: _problem_response("Request body too large"),
    422: _problem_response("Invalid request, workflow, inputs or answer"),
    503: _problem_response("A backing service is unavailable"),
}


class ApiError(Exception):
    def __init__(self, status: int, title: str, detail: str | None = None,
                 **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def problem(status: int, title: str, detail: str | None = None, *,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail or title,
            **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _json_path(loc: tuple[Any, ...]) -> str:
    path = "$"
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def to_problem(exc: Exception) -> JSONResponse:
    if isinstance(exc, ApiError):
        return problem(exc.status, exc.title, exc.detail, **exc.extra)
    if isinstance(exc, SpecError):
        return problem(422, "Invalid workflow", str(exc).splitlines()[0],
                       problems=[p.as_dict() for p in exc.problems])
    if isinstance(exc, AnswerError):  # a missing answer too: 422, the run keeps waiting
        return problem(422, "Invalid answer", str(exc),
                       problems=[{"path": exc.path, "message": exc.message}])
    if isinstance(exc, InputError):
        return problem(422, "Invalid inputs", str(exc),
                       problems=[{"path": exc.path, "message": exc.message}])
    if isinstance(exc, RunNotFound):
        return problem(404, "Not found", str(exc))
    if isinstance(exc, NotResumable):
        return problem(409, "Conflict", str(exc))
    if isinstance(exc, InvalidCursor):
        return problem(422, "Invalid cursor", str(exc))
    if isinstance(exc, StoreError):
        return problem(503, "Store unavailable", str(exc))
    if isinstance(exc, WorkflowError):
        return problem(409, "Conflict", str(exc))
    if isinstance(exc, RequestValidationError):
        problems = [{"path": _json_path(tuple(e["loc"])), "message": e["msg"]}
                    for e in exc.errors()]
        return problem(422, "Invalid request", "the request does not match its schema",
                       problems=problems)
    if isinstance(exc, HTTPException):
        return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    return problem(500, "Internal error", "an unexpected error happened; see the server log")


async def _body_problem(request: Request, exc: RequestValidationError) -> JSONResponse | None:
    """A body that is not JSON at all: 415 for another media type, 400 for bad syntax."""
    errors = exc.errors()
    if not any(e.get("loc", ())[:1] == ("body",) for e in errors):
        return None
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        return problem(415, "Unsupported media type",
                       f"send the body as application/json, not {media}")
    if not any(e.get("type") == "json_invalid" for e in errors):
        return None
    try:
        json.loads(await request.body())
    except json.JSONDecodeError as bad:
        return problem(400, "Malformed JSON", f"the body is not valid JSON: {bad.msg} at "
                                              f"line {bad.lineno} column {bad.colno}")
    except (RuntimeError, UnicodeDecodeError):  # body no longer readable, or not UTF-8
        pass
    return problem(400, "Malformed JSON", "the body is not valid JSON")


def install(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, RequestValidationError):
            answer = await _body_problem(request, exc)
            if answer is not None:
                return answer
        return to_problem(exc)

    # Any other exception is CrashAsProblem's (app/api/edge.py), with the correlation id.
    for kind in (ApiError, WorkflowError, RequestValidationError, HTTPException):
        app.add_exception_handler(kind, handle)
