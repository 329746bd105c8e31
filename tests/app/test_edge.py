"""An error no handler takes is still a problem document with the request's
correlation id (the edge's head limits are tested on a live server in
test_hostile_server.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from flowloom.app.api.main import create_app
from flowloom.app.settings import load_settings


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    app = create_app(load_settings(store=f"sqlite:///{tmp_path / 'api.db'}"))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/boom-late")
    async def boom_late() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"started"
            raise RuntimeError("a bug after the answer began")
        return StreamingResponse(chunks())

    async with app.router.lifespan_context(app):
        yield app


def assert_crash_problem(response: httpx.Response, fresh: httpx.Response,
                         correlation_id: str) -> None:
    """A 500 problem carrying the request's correlation id; `fresh`, sent without one,
    got a new id."""
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-correlation-id"] == correlation_id
    assert response.json() == {"type": "about:blank", "title": "Internal error", "status": 500,
                               "detail": "an unexpected error happened; see the server log"}
    assert len(fresh.headers["x-correlation-id"]) == 32


async def test_an_unhandled_error_is_a_500_problem_with_the_correlation_id(
        app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/boom", headers={"X-Correlation-ID": "req-42"})
        fresh = await client.get("/boom")
    assert_crash_problem(response, fresh, "req-42")
    assert "a bug" not in response.text  # the traceback goes to the log only
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in logged] == ["unhandled error on GET /boom"] * 2
    assert all(r.exc_info and "a bug" in str(r.exc_info[1]) for r in logged)


async def test_an_error_after_the_answer_began_cuts_it(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        with pytest.raises(RuntimeError, match="after the answer began"):
            await client.get("/boom-late")


async def test_an_error_in_a_middleware_is_still_a_500_problem(tmp_path: Path) -> None:
    app = create_app(load_settings(store=f"sqlite:///{tmp_path / 'api.db'}"))

    @app.middleware("http")  # outermost of all: a bug here escapes CrashAsProblem
    async def broken(request: object, call_next: object) -> None:
        raise RuntimeError("a bug in a middleware")

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.get("/health", headers={"X-Correlation-ID": "req-7"})
            fresh = await client.get("/health")
    assert_crash_problem(response, fresh, "req-7")
