"""`send`, hop by hop, against real local servers (plain and TLS): redirects, Host and
SNI, bodies, timeouts and refused connections."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from flowloom.graphs.errors import NodeError
from flowloom.nodes.net import HttpPolicy, send
from tests.servers import FlakyServer, ServerThread

Web = tuple[FlakyServer, str]
LOCAL = HttpPolicy(allow_private=True)


async def endless(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        while True:  # paced, so that a client reading it all grows slowly
            yield b"x" * 4096
            await asyncio.sleep(0.01)

    return StreamingResponse(chunks(), media_type="text/plain")


async def created(request: Request) -> Response:
    return PlainTextResponse("made", status_code=201, headers={"location": "/items/7"})


async def hello(request: Request) -> Response:
    return PlainTextResponse(f"hello from {request.headers['host']}")


APP = Starlette(routes=[Route("/endless", endless), Route("/created", created, methods=["POST"]),
                        Route("/hello", hello)])


@pytest.fixture(scope="module")
def odd() -> Iterator[str]:
    with ServerThread(APP) as server:
        yield server.url


def redirect_chain(base: str, hops: int, end: str) -> str:
    url = end
    for _ in range(hops):
        url = f"{base}/redirect?to={quote(url, safe='')}"
    return url


async def test_five_redirects_are_followed_and_a_sixth_is_refused(web: Web) -> None:
    server, base = web
    server.hits.clear()
    async with httpx.AsyncClient() as client:
        reply = await send(client, "GET", redirect_chain(base, 5, f"{base}/echo?key=five"),
                           policy=LOCAL)
        assert (reply.status, reply.url) == (200, f"{base}/echo?key=five")
        with pytest.raises(NodeError) as refused:
            await send(client, "GET", redirect_chain(base, 6, f"{base}/echo?key=six"),
                       policy=LOCAL)
    assert (refused.value.message, refused.value.kind) == (
        f"more than 5 redirects from {base}/redirect?to=***", "TooManyRedirects")
    assert (len(server.hits["five"]), len(server.hits["six"])) == (1, 0)


async def test_a_client_that_follows_redirects_itself_still_goes_hop_by_hop(web: Web) -> None:
    _, base = web
    async with httpx.AsyncClient(follow_redirects=True) as client:
        reply = await send(client, "GET", f"{base}/redirect?to=/echo%3Fkey%3Dself",
                           policy=LOCAL)
    assert (reply.status, reply.url) == (200, f"{base}/echo?key=self")


async def test_a_201_with_a_location_is_an_answer_not_a_redirect(odd: str) -> None:
    async with httpx.AsyncClient() as client:
        reply = await send(client, "POST", f"{odd}/created", policy=LOCAL, json_body={})
    assert (reply.status, reply.body, reply.headers["location"]) == (201, b"made", "/items/7")


async def test_a_head_stays_a_head_after_a_303(web: Web) -> None:
    server, base = web
    server.hits.clear()
    async with httpx.AsyncClient() as client:
        reply = await send(client, "HEAD", f"{base}/redirect?code=303&to=/echo%3Fkey%3Dhead",
                           policy=LOCAL)
    assert (reply.status, reply.body) == (200, b"")
    assert [hit["method"] for hit in server.hits["head"]] == ["HEAD"]


async def test_a_raw_body_is_sent_as_given(web: Web) -> None:
    server, base = web
    server.hits.clear()
    async with httpx.AsyncClient() as client:
        reply = await send(client, "PUT", f"{base}/echo?key=raw", policy=LOCAL,
                           content=b'{"raw": true}',
                           headers={"content-type": "application/json"})
    assert reply.parsed()["json"] == {"raw": True}
    assert [hit["body"] for hit in server.hits["raw"]] == [{"raw": True}]


@pytest.mark.parametrize("name", ["host", "Host", "HOST"])
async def test_the_host_header_is_the_urls_whatever_the_caller_sets(web: Web,
                                                                    name: str) -> None:
    server, base = web
    server.hits.clear()
    async with httpx.AsyncClient() as client:
        reply = await send(client, "GET", f"{base}/echo?key=host", policy=LOCAL,
                           headers={name: "internal.example", "x-trace": "t"})
    assert reply.status == 200
    [hit] = server.hits["host"]
    assert (hit["headers"]["host"], hit["headers"]["x-trace"]) == (base.removeprefix(
        "http://"), "t")


async def test_a_body_that_never_ends_is_cut_at_the_cap(odd: str) -> None:
    async with httpx.AsyncClient() as client, asyncio.timeout(30):  # only a hang trips it
        with pytest.raises(NodeError) as refused:
            await send(client, "GET", f"{odd}/endless",
                       policy=HttpPolicy(allow_private=True, max_response_bytes=100_000))
    assert (refused.value.message, refused.value.kind) == (
        "response body exceeds 100,000 bytes (FLOWLOOM_HTTP_MAX_RESPONSE_BYTES)",
        "ResponseTooLarge")


async def test_a_hop_that_times_out_is_a_retriable_timeout(web: Web) -> None:
    _, base = web
    async with httpx.AsyncClient(timeout=0.2) as client:
        with pytest.raises(NodeError) as failed:
            await send(client, "GET", f"{base}/slow?seconds=3&key=hop", policy=LOCAL)
    assert (failed.value.message, failed.value.kind, failed.value.retriable) == (
        f"GET {base}/slow?seconds=***&key=*** timed out", "TimeoutError", True)


async def test_a_refused_connection_is_a_retriable_network_error(web: Web) -> None:
    _, base = web
    async with httpx.AsyncClient() as client:
        with pytest.raises(NodeError) as direct:
            await send(client, "GET", "http://127.0.0.1:9/x?t=1", policy=LOCAL)
        with pytest.raises(NodeError) as redirected:  # after a 303 the hop is a GET
            await send(client, "POST", f"{base}/redirect?code=303&to="
                       + quote("http://127.0.0.1:9/y", safe=""), policy=LOCAL, json_body={})
    refused = "failed: ConnectError: All connection attempts failed"
    assert (direct.value.message, direct.value.kind, direct.value.retriable) == (
        f"GET http://127.0.0.1:9/x?t=*** {refused}", "NetworkError", True)
    assert redirected.value.message == f"GET http://127.0.0.1:9/y {refused}"


# --- TLS: the connection goes to the checked address, the name goes to SNI ----------------

@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext]]:
    """A TLS server whose certificate names `localhost` only (no IP address)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder: Path = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    thread = ServerThread(APP)
    thread.server.config = uvicorn.Config(APP, host="127.0.0.1", port=thread.port,
                                          log_level="warning", lifespan="off",
                                          ssl_certfile=str(cert), ssl_keyfile=str(key))
    trust = ssl.create_default_context(cafile=str(cert))
    with thread:
        yield f"https://localhost:{thread.port}", trust


async def test_https_goes_to_the_checked_address_and_verifies_the_name(
        tls: tuple[str, ssl.SSLContext]) -> None:
    base, trust = tls
    connected: list[str] = []

    async def record(request: httpx.Request) -> None:
        connected.append(request.url.host)

    async with httpx.AsyncClient(verify=trust, event_hooks={"request": [record]}) as client:
        reply = await send(client, "GET", f"{base}/hello", policy=LOCAL)
    port = base.rsplit(":", 1)[1]
    assert (reply.status, reply.body) == (200, f"hello from localhost:{port}".encode())
    assert connected == ["127.0.0.1"]
