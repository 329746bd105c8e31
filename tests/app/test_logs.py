"""Log lines: the access log, correlation ids on runs and their child runs, the JSON format
and FLOWLOOM_LOG_LEVEL / --log-level."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flowloom.app.api.main import create_app
from flowloom.app.logs import JsonFormatter
from flowloom.app.runner import execute_workflow_async
from flowloom.app.settings import load_settings
from flowloom.app.stores.sqlite import SqliteStore
from tests.app.conftest import Cli
from tests.conftest import REPO, chain, t

HELLO = json.loads((REPO / "examples" / "hello.json").read_text())


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(JsonFormatter().format(r)) for r in caplog.records
            if r.name == "flowloom.access"]


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(load_settings(store=f"sqlite:///{tmp_path / 'logs.db'}", api_keys="k1"))
    async for client in _client(app):
        yield client


async def test_every_request_has_one_access_line(keyed: httpx.AsyncClient,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowloom.access")
    key = {"Authorization": "Bearer k1"}
    await keyed.get("/health", headers={"X-Correlation-ID": "trace-1"})
    await keyed.get("/workflows?limit=5")  # no key: refused by the middleware
    await keyed.get("/workflows/nope", headers=key)
    ran = await keyed.post("/execute", json={"workflow": HELLO}, headers=key)
    lines = access_lines(caplog)
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("GET", "/health", 200), ("GET", "/workflows", 401), ("GET", "/workflows/nope", 404),
        ("POST", "/execute", 200)]
    assert lines[0]["correlation_id"] == "trace-1"
    assert lines[3]["correlation_id"] == ran.headers["x-correlation-id"] == (
        ran.json()["correlation_id"])
    assert len({x["correlation_id"] for x in lines}) == 4  # each request its own
    for line in lines:
        assert set(line) == {"at", "level", "logger", "message", "correlation_id", "method",
                             "path", "status", "duration_ms"}
        assert line["level"] == "info" and isinstance(line["duration_ms"], float)
        assert line["message"].startswith(f"{line['method']} {line['path']} {line['status']} ")


async def test_a_run_s_log_lines_and_its_child_runs_carry_its_correlation_id(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowloom.run")
    child = {"nodes": [t("inner", "{{ inputs.n + 1 }}")]}
    doc = {"nodes": [t("a", 1), {"id": "sub", "type": "subworkflow",
                                 "config": {"workflow": child, "inputs": {"n": "{{ a }}"}}}],
           "edges": chain("a", "sub")}
    store = SqliteStore(tmp_path / "runs.db")
    try:
        record = await execute_workflow_async(doc, store=store, execution_id="parent",
                                              correlation_id="trace-9")
        assert record.status == "succeeded" and record.output == 2
        kid = await store.get_run("parent.sub")
        assert kid is not None and kid.correlation_id == "trace-9"
        alone = await execute_workflow_async(HELLO, store=store, execution_id="alone")
    finally:
        await store.close()
    lines = [(r.getMessage(), getattr(r, "correlation_id", None)) for r in caplog.records
             if r.name == "flowloom.run"]
    assert [(m.split()[1], m.split()[-1]) for m, cid in lines if cid == "trace-9"] == [
        ("parent", "started"), ("parent.sub", "started"), ("parent.sub", "succeeded"),
        ("parent", "succeeded")]
    # a run started outside any request gets an id of its own, on its record and its lines
    assert alone.correlation_id is not None and len(alone.correlation_id) == 32
    assert {cid for m, cid in lines if m.split()[1] == "alone"} == {alone.correlation_id}


def test_log_level_setting_and_option(cli: Cli) -> None:
    hello = str(REPO / "examples" / "hello.json")
    quiet = cli("run", hello, "--json")
    assert quiet.returncode == 0 and quiet.stderr == ""  # warnings only, by default
    told = cli("run", hello, "--json", FLOWLOOM_LOG_LEVEL="INFO")
    record = json.loads(told.stdout)
    lines = [json.loads(line) for line in told.stderr.splitlines()]
    run_lines = [x for x in lines if x["logger"] == "flowloom.run"]
    assert [x["message"] for x in run_lines] == [
        f"run {record['execution_id']} of hello v1 started",
        f"run {record['execution_id']} succeeded"]
    assert {x["correlation_id"] for x in run_lines} == {record["correlation_id"]}
    bad = cli("run", hello, FLOWLOOM_LOG_LEVEL="loud")
    assert (bad.returncode, bad.stderr) == (2, "flowloom: FLOWLOOM_LOG_LEVEL: Input should be "
                                               "'debug', 'info', 'warning', 'error' or "
                                               "'critical'\n")
    option = cli("worker", "--log-level", "loud")
    assert option.returncode == 2
    assert option.stderr == ("flowloom: worker: Invalid value for '--log-level': 'loud' is "
                             "not one of debug, info, warning, error, critical\n")
