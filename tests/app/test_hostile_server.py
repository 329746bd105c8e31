"""Issue #11's hostile payloads against a real `flowloom serve` on loopback, while a probe
keeps asking `/health`: every payload ends in a clear failed node, `/health` answers
while the slow ones run out their budget, and afterwards the server is healthy, small,
and every run reads back, even after a restart. Counts and order, not the clock."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowloom.app.api.edge import MAX_HEAD_BYTES, MAX_HEADERS
from tests.hostile_corpus import PAYLOADS, Payload
from tests.servers import Server, raw_request

pytestmark = pytest.mark.slow


class HealthProbe:
    """GET /health, one after the other, from a thread of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(f"{self.url}/health")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code == 200:
                    self.answers += 1
                else:
                    self.failures.append(f"{response.status_code} {response.text}")

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("hostile")).start()
    yield started
    started.kill()


def rss_kib(server: Server) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1))


@pytest.fixture(scope="module")
def first_rss(server: Server) -> int:
    return rss_kib(server)


RUNS: list[str] = []


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.name for p in PAYLOADS])
def test_a_hostile_payload_fails_its_node_while_health_keeps_answering(
        server: Server, first_rss: int, payload: Payload) -> None:
    with HealthProbe(server.url) as probe:
        before = probe.answers
        response = httpx.post(f"{server.url}/execute", timeout=120, json={
            "workflow": payload.document(), "inputs": payload.inputs, "mode": "sync"})
        during = probe.answers - before
    assert response.status_code == 200, response.text
    run = response.json()
    RUNS.append(run["execution_id"])
    assert run["status"] == "failed"
    [error] = run["errors"]
    assert error["node_id"] == "evil"
    assert payload.expect in error["message"]
    assert run["node_states"]["evil"]["status"] == "failed"
    assert probe.failures == []
    if payload.slow:  # it ran until its time budget stopped it: the loop served meanwhile
        assert during >= 5  # frozen, the server would have answered once at most


def test_too_many_headers_are_refused_as_a_problem(server: Server) -> None:
    many = "".join(f"x-h{i}: v\r\n" for i in range(MAX_HEADERS + 1))
    status, headers, body = raw_request(server, iter(
        [f"GET /health HTTP/1.1\r\nhost: x\r\n{many}\r\n".encode()]))
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert len(headers["x-correlation-id"]) == 32
    assert body["status"] == 431 and f"more than {MAX_HEADERS} headers" in body["detail"]


def test_a_header_larger_than_the_limit_is_refused_before_it_all_arrives(
        server: Server) -> None:
    def endless_header() -> Iterator[bytes]:
        yield b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: "
        for _ in range(64 * 1024):  # 64 MiB, if the server read it all
            yield b"a" * 1024

    status, headers, body = raw_request(server, endless_header())
    assert status == 431 and headers["content-type"] == "application/problem+json"
    assert f"larger than {MAX_HEAD_BYTES:,} bytes" in body["detail"]
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_request_that_is_not_http_is_a_400_problem(server: Server) -> None:
    status, headers, body = raw_request(server, iter([b"NOT HTTP AT ALL\r\n\r\n"]))
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert len(headers["x-correlation-id"]) == 32
    assert body["detail"].startswith("not a valid HTTP/1.1 request")


def test_afterwards_the_server_is_small_healthy_and_every_run_reads_back_after_restart(
        server: Server, first_rss: int) -> None:
    assert len(RUNS) == len(PAYLOADS)  # the corpus ran first, in this process
    assert rss_kib(server) - first_rss < 768 * 1024  # bounded: the issue saw 3 GB
    listed = httpx.get(f"{server.url}/executions", params={"limit": 100}).json()["items"]
    assert sorted(r["execution_id"] for r in listed) == sorted(RUNS)
    server.kill()
    server.start()
    listed = httpx.get(f"{server.url}/executions", params={"limit": 100}).json()["items"]
    assert {r["execution_id"]: r["status"] for r in listed} == dict.fromkeys(RUNS, "failed")
    for run_id in RUNS:
        assert httpx.get(f"{server.url}/executions/{run_id}").status_code == 200
