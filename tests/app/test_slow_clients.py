"""Slow clients cannot hold the server's connections: a request's line and headers must
arrive within FLOWLOOM_REQUEST_HEAD_TIMEOUT_S of its first byte (or of the connection,
for one that sends nothing), or the server answers 408 and closes. On a real
`flowloom serve`, with the timeout set to one second."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import Server, raw_request

pytestmark = pytest.mark.slow
TRICKLES = 600  # a header line each 0.1 s: a minute, if the server let the client go on


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("slow"))
    started.env["FLOWLOOM_REQUEST_HEAD_TIMEOUT_S"] = "1"
    yield started.start()
    started.kill()


def test_a_head_trickling_in_is_cut_off_with_a_408(server: Server) -> None:
    sent = 0

    def trickle() -> Iterator[bytes]:
        nonlocal sent
        yield b"GET /health HTTP/1.1\r\nhost: x\r\n"
        for i in range(TRICKLES):
            time.sleep(0.1)
            sent += 1
            yield f"x-slow-{i}: a\r\n".encode()

    status, headers, body = raw_request(server, trickle())
    assert status == 408 and headers["content-type"] == "application/problem+json"
    assert len(headers["x-correlation-id"]) == 32
    assert body["detail"] == "the request line and headers did not arrive within 1 s"
    assert sent < TRICKLES  # cut off while the client still had lines to send
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        received = b""
        while chunk := sock.recv(65536):  # the server's answer, then its close
            received += chunk
    assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_a_kept_alive_connection_outlives_the_head_timeout(server: Server) -> None:
    # The timer covers a head's arrival only: a client idle between whole requests keeps
    # its connection past it (until uvicorn's keep-alive, 5 s, ends it).
    request = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        answers = []
        for _ in range(2):
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b"}"):  # /health answers a JSON object
                chunk = sock.recv(65536)
                assert chunk, answer  # closed before answering
                answer += chunk
            answers.append(answer.split(b"\r\n", 1)[0])
            time.sleep(1.5)  # idle past the head timeout, within the keep-alive
    assert answers == [b"HTTP/1.1 200 OK"] * 2


def test_the_head_timeout_is_a_setting(tmp_path: Path) -> None:
    from flowloom.app.api.edge import HttpProtocol, server_options
    from flowloom.app.settings import load_settings
    assert load_settings(request_head_timeout_s=2.5).request_head_timeout_s == 2.5
    assert server_options()["http"] is HttpProtocol
    assert server_options(2.5)["http"].head_timeout_s == 2.5
    assert HttpProtocol.head_timeout_s == 10.0
