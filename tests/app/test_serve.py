"""`flowloom serve` as a real process: live SSE delivery, and runs that survive a kill."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import FlakyServer, Server

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    started = Server(tmp_path).start()
    yield started
    started.kill()


def settled_records(server: Server, ids: list[str], polls: int = 130) -> list[Any]:
    """The runs' records once all succeeded, or as they are after `polls` reads."""
    for _ in range(polls):
        records = [httpx.get(f"{server.url}/executions/{i}").json() for i in ids]
        if all(r["status"] == "succeeded" for r in records):
            break
        time.sleep(0.3)
    return records


def napping(server: Server, ids: list[str], polls: int = 600) -> list[Any]:
    """The runs' records once each is in its `nap` (polled a bounded number of times:
    only a hang trips it)."""
    for _ in range(polls):
        records = [httpx.get(f"{server.url}/executions/{i}").json() for i in ids]
        if all("nap" in r["node_states"] for r in records):
            return records
        time.sleep(0.05)
    pytest.fail(f"not all in `nap`: {records}")


def slow_workflow(seconds: float) -> dict[str, Any]:
    return {"nodes": [{"id": "a", "type": "transform", "config": {"output": 1}},
                      {"id": "nap", "type": "delay", "config": {"seconds": seconds}},
                      {"id": "b", "type": "transform", "config": {"output": "{{ a + 1 }}"}}],
            "edges": [{"source": "a", "target": "nap"}, {"source": "nap", "target": "b"}]}


def test_sse_delivers_events_live_and_closes_after_run_finished(server: Server) -> None:
    run = httpx.post(f"{server.url}/execute", json={"workflow": slow_workflow(1.0),
                                                    "mode": "async"}).json()
    url = f"{server.url}/executions/{run['execution_id']}"
    names: list[str] = []
    while_napping: dict[str, Any] | None = None
    with httpx.stream("GET", f"{url}/events", timeout=10) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                names.append(line[7:])
            if line.startswith("data: ") and '"node.started"' in line and '"nap"' in line:
                while_napping = httpx.get(url).json()  # events arrive as they happen
    assert names == ["run.started", "node.started", "node.succeeded", "node.started",
                     "node.succeeded", "node.started", "node.succeeded", "run.finished"]
    assert while_napping is not None and while_napping["status"] == "running"
    assert while_napping["node_states"]["nap"]["status"] == "running"
    assert "b" not in while_napping["node_states"]


def test_killed_server_restarts_and_its_runs_finish(server: Server, tmp_path: Path) -> None:
    ids = [httpx.post(f"{server.url}/execute", json={"workflow": slow_workflow(2.0),
                                                     "mode": "async"}).json()["execution_id"]
           for _ in range(3)]
    assert {r["status"] for r in napping(server, ids)} == {"running"}
    server.kill()
    server.start()
    records = settled_records(server, ids)
    assert [r["status"] for r in records] == ["succeeded"] * 3
    assert all(r["output"] == 2 for r in records)
    assert all(r["node_states"]["a"]["attempts"] == 1 for r in records)


def test_api_keys_and_problem_documents_over_the_wire(tmp_path: Path) -> None:
    secured = Server(tmp_path)
    secured.env["FLOWLOOM_API_KEYS"] = "s3cret"
    secured.start()
    try:
        denied = httpx.get(f"{secured.url}/executions")
        assert denied.status_code == 401
        assert denied.headers["content-type"] == "application/problem+json"
        ok = httpx.get(f"{secured.url}/executions", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and json.loads(ok.text)["items"] == []
    finally:
        secured.kill()


def test_log_lines_are_json_and_carry_the_correlation_id(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    try:
        response = httpx.post(f"{server.url}/execute", json={"workflow": slow_workflow(0.1)},
                              headers={"X-Correlation-ID": "trace-77"})
        assert response.status_code == 200
        run_id = response.json()["execution_id"]
    finally:
        server.kill()
    lines = [json.loads(line) for line in server.log.read_text().splitlines()
             if line.startswith("{")]
    mine = [line for line in lines if run_id in line["message"]]
    assert [line["message"].split()[-1] for line in mine] == ["started", "succeeded"]
    assert {line["correlation_id"] for line in mine} == {"trace-77"}
    assert all(line["level"] == "info" and line["logger"] == "flowloom.run" for line in mine)
    access = [line for line in lines if line["logger"] == "flowloom.access"
              and line["correlation_id"] == "trace-77"]
    assert [(x["method"], x["path"], x["status"]) for x in access] == [
        ("POST", "/execute", 200)]
    assert access[0]["duration_ms"] >= 0  # a number: the duration of this request


def test_several_server_processes_log_as_one(tmp_path: Path) -> None:
    server = Server(tmp_path).start(processes=2)
    try:
        for i in range(4):
            httpx.get(f"{server.url}/health", headers={"X-Correlation-ID": f"multi-{i}"})
    finally:
        server.kill()
    lines = [json.loads(line) for line in server.log.read_text().splitlines()
             if line.startswith("{")]
    access = sorted(x["correlation_id"] for x in lines if x["logger"] == "flowloom.access"
                    and (x["correlation_id"] or "").startswith("multi-"))
    assert access == [f"multi-{i}" for i in range(4)]


def test_several_server_processes_share_the_store_and_recover_runs_once(
        tmp_path: Path, web: tuple[FlakyServer, str]) -> None:
    hits, base = web
    server = Server(tmp_path)
    server.env["FLOWLOOM_HTTP_ALLOW_PRIVATE"] = "true"
    server.start(processes=2)

    def workflow(key: str) -> dict[str, Any]:
        doc = slow_workflow(2.0)
        doc["nodes"][2] = {"id": "b", "type": "http", "config": {
            "method": "POST", "url": f"{base}/echo?key={key}"}}
        return doc

    try:
        ids = [httpx.post(f"{server.url}/execute", json={
            "workflow": workflow(f"multi{i}"), "mode": "async"}).json()["execution_id"]
            for i in range(4)]
        assert {r["status"] for r in napping(server, ids)} == {"running"}
        server.kill()
        server.start(processes=2)
        records = settled_records(server, ids)
        assert [r["status"] for r in records] == ["succeeded"] * 4
        # every call made once: by the killed processes, or by whichever took the run over
        assert [len(hits.hits[f"multi{i}"]) for i in range(4)] == [1, 1, 1, 1]
    finally:
        server.kill()
