"""What the http node makes of what it is sent and what comes back: status errors, error
body summaries, Retry-After, body caps, ports and origins, DNS failures, settings."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest

from flowloom.graphs.errors import NodeError
from flowloom.nodes.net import (
    HttpPolicy,
    Reply,
    _origin,
    body_summary,
    checked_address,
    resolve,
    retry_after_seconds,
    send,
    status_error,
)
from flowloom.nodes.services import NodeSettings
from tests.servers import FlakyServer

Web = tuple[FlakyServer, str]


def reply(status: int = 502, body: bytes = b"", content_type: str | None = "text/plain",
          url: str = "http://api.test/v1/x", **headers: str) -> Reply:
    if content_type is not None:
        headers["content-type"] = content_type
    return Reply(status=status, headers=headers, body=body, url=url)


@pytest.mark.parametrize(("content_type", "body", "shown"), [
    ("application/json; charset=utf-8", b'{"message": "slow down"}', "slow down"),
    ("application/json", b'{"message": "rate limited", "error": "x"}', "rate limited"),
    ("application/problem+json", b'{"title": "Not Found", "status": 404}', "Not Found"),
    ("application/json", b'{"code": 7, "why": "x"}', '{"code": 7, "why": "x"}'),
    ("application/json", b"[1,2]", "[1, 2]"),
    ("application/json", b"upstream exploded", "upstream exploded"),
    ("text/html", b"Bad gateway: <b>retry</b> later", "Bad gateway: retry later"),
    ("text/html", b"<html>\n<head><title>Gateway Timeout</title></head><body>Upstream slow"
                  b"</body></html>", "Gateway Timeout"),
    ("text/html", b"<HTML><HEAD><TITLE>Access Denied</TITLE></HEAD><BODY>You don't have "
                  b"permission</BODY></HTML>", "Access Denied"),
    ("text/html", b"<title>\n  Service Unavailable\n</title>", "Service Unavailable"),
    ("text/plain", b"\n  <p>Down for <b>maintenance</b></p>", "Down for maintenance"),
    (None, b"<p>Down</p>", "Down"),
    (None, b"plain words", "plain words"),
    ("text/plain", b"caf\xe9 closed", "caf\ufffd closed"),
    ("text/plain", b"too   many\t spaces", "too many spaces"),
    ("text/plain", b"  \n\t\n", ""),
    ("text/plain", b"y" * 200, "y" * 200),
    ("text/plain", b"\n" * 65536 + b"past the first 64 KiB", ""),
])
def test_an_error_body_is_summed_up_in_one_line(content_type: str | None, body: bytes,
                                                shown: str) -> None:
    assert body_summary(reply(body=body, content_type=content_type)) == shown


def test_a_status_error_names_status_method_url_and_body() -> None:
    error = status_error(reply(503, b"busy, try later", url="https://u:pw@api.test/x?k=v",
                               **{"retry-after": "7"}), "GET", "fetch")
    assert str(error) == ("node `fetch`: HTTP 503 Service Unavailable from GET "
                          "https://u:***@api.test/x?k=***: busy, try later")
    assert (error.kind, error.retriable, error.retry_after_s) == ("HTTPStatusError", True, 7.0)


@pytest.mark.parametrize(("status", "body", "message"), [
    (599, b"boom", "HTTP 599 from POST http://api.test/v1/x: boom"),
    (404, b"", "HTTP 404 Not Found from POST http://api.test/v1/x"),
    (404, b" \n ", "HTTP 404 Not Found from POST http://api.test/v1/x"),
])
def test_a_status_error_without_reason_or_body_says_no_more(status: int, body: bytes,
                                                            message: str) -> None:
    error = status_error(reply(status, body), "POST")
    assert (error.message, error.kind, error.retry_after_s) == (message, "HTTPStatusError",
                                                                None)


@pytest.mark.parametrize(("status", "retriable"), [
    (400, False), (401, False), (404, False), (409, False), (422, False), (499, False),
    (408, True), (429, True), (500, True), (501, True), (502, True), (503, True),
    (504, True), (599, True),
])
def test_408_429_and_every_5xx_are_retriable(status: int, retriable: bool) -> None:
    assert status_error(reply(status), "GET").retriable is retriable


@pytest.mark.parametrize(("value", "seconds"), [
    ("0", 0.0), ("2.5", 2.5), ("120", 120.0), ("-3", 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: at once
    ("soon", None), ("", None), (None, None),
])
def test_retry_after_in_seconds_or_as_a_date(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


@pytest.mark.parametrize(("content_type", "body", "parsed"), [
    ("application/json", b'{"a": 1}', {"a": 1}),
    ("application/json", b"", None),
    ("application/json", b"{oops", "{oops"),
    (None, b'{"a": 1}', '{"a": 1}'),
    ("text/plain", b"caf\xe9", "caf\ufffd"),
])
def test_a_reply_body_is_parsed_by_its_content_type(content_type: str | None, body: bytes,
                                                    parsed: object) -> None:
    assert reply(200, body, content_type).parsed() == parsed


async def test_a_body_at_the_cap_is_read_and_one_byte_more_is_refused(web: Web) -> None:
    _, base = web
    async with httpx.AsyncClient() as client:
        at_cap = await send(client, "GET", f"{base}/big?bytes=1000",
                            policy=HttpPolicy(allow_private=True, max_response_bytes=1000))
        assert at_cap.body == b"x" * 1000
        with pytest.raises(NodeError) as refused:
            await send(client, "GET", f"{base}/big?bytes=1000",
                       policy=HttpPolicy(allow_private=True, max_response_bytes=999))
    assert (refused.value.message, refused.value.kind) == (
        "response body exceeds 999 bytes (FLOWLOOM_HTTP_MAX_RESPONSE_BYTES)", "ResponseTooLarge")


async def test_the_cap_counts_the_whole_body_not_each_read(web: Web) -> None:
    _, base = web
    # Each read off the socket is at most 64 KiB: the cap must add them up.
    async with httpx.AsyncClient() as client:
        whole = await send(client, "GET", f"{base}/big?bytes=200000",
                           policy=HttpPolicy(allow_private=True))
        assert whole.body == b"x" * 200000
        with pytest.raises(NodeError) as refused:
            await send(client, "GET", f"{base}/big?bytes=200000",
                       policy=HttpPolicy(allow_private=True, max_response_bytes=65536))
    assert refused.value.message == (
        "response body exceeds 65,536 bytes (FLOWLOOM_HTTP_MAX_RESPONSE_BYTES)")


@pytest.mark.parametrize(("first", "second", "same"), [
    ("https://h/a", "https://h:443/b", True),
    ("http://h/a", "http://h:80/b", True),
    ("https://h/a", "https://h:444/b", False),
    ("https://h/a", "https://h:80/b", False),
    ("http://h/a", "http://h:81/b", False),
    ("http://h/a", "http://h:443/b", False),
    ("http://h/a", "https://h/a", False),
    ("https://h/a", "https://H/a", True),
    ("https://h/a", "https://g/a", False),
])
def test_same_origin_is_scheme_host_and_port(first: str, second: str, same: bool) -> None:
    assert (_origin(httpx.URL(first)) == _origin(httpx.URL(second))) is same


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://127.0.0.1/x", "127.0.0.1:80"), ("https://127.0.0.1/x", "127.0.0.1:443"),
    ("http://127.0.0.1:8080/x", "127.0.0.1:8080"),
])
async def test_allow_hosts_name_the_default_port_when_the_url_has_none(
        url: str, allowed: str) -> None:
    policy = HttpPolicy(allow_hosts=frozenset({allowed}))
    assert await checked_address(httpx.URL(url), policy) == "127.0.0.1"
    with pytest.raises(NodeError):
        await checked_address(httpx.URL(url), HttpPolicy(allow_hosts=frozenset({"127.0.0.1"})))


@pytest.mark.parametrize(("url", "shown"), [("https://10.1.2.3/x", "https://10.1.2.3:443"),
                                             ("http://10.1.2.3/x", "http://10.1.2.3:80")])
async def test_a_refused_address_is_named_with_its_port(url: str, shown: str) -> None:
    with pytest.raises(NodeError) as refused:
        await checked_address(httpx.URL(url), HttpPolicy())
    assert refused.value.kind == "BlockedAddress" and not refused.value.retriable
    assert refused.value.message == (
        f"refused to call {shown}: it resolves to 10.1.2.3, a loopback, private, link-local "
        "or metadata address (set FLOWLOOM_HTTP_ALLOW_PRIVATE=true to allow it)")


async def test_a_link_local_address_with_a_zone_is_refused_not_looked_up() -> None:
    # An IP literal is never sent to the resolver, which knows no such zone and would turn
    # the refusal into a DNS error that is retried.
    with pytest.raises(NodeError) as refused:
        await checked_address(httpx.URL("http://[fe80::1%25eth9]/"), HttpPolicy())
    assert (refused.value.kind, refused.value.retriable) == ("BlockedAddress", False)


async def test_a_public_address_is_called_as_it_is_and_other_schemes_are_refused() -> None:
    assert await checked_address(httpx.URL("https://8.8.8.8/dns"), HttpPolicy()) == "8.8.8.8"
    with pytest.raises(NodeError) as refused:
        await checked_address(httpx.URL("ftp://8.8.8.8/x"), HttpPolicy())
    assert refused.value.message == "only http and https URLs are allowed, got `ftp`"


async def test_a_host_that_does_not_resolve_is_a_retriable_dns_error() -> None:
    with pytest.raises(socket.gaierror) as system:  # what this machine's resolver says
        socket.getaddrinfo("no-such-host.invalid", 80)
    with pytest.raises(NodeError) as failed:
        await resolve("no-such-host.invalid", 80)
    assert (failed.value.message, failed.value.kind, failed.value.retriable) == (
        f"cannot resolve host `no-such-host.invalid`: {system.value.strerror}", "DNSError", True)


def test_allow_hosts_come_from_a_comma_separated_setting() -> None:
    policy = HttpPolicy.from_settings(NodeSettings(
        http_allow_hosts=" internal.test:8443, 10.0.0.5:80 ,,", http_allow_private=False,
        http_max_response_bytes=4096))
    assert policy == HttpPolicy(allow_private=False,
                                allow_hosts=frozenset({"internal.test:8443", "10.0.0.5:80"}),
                                max_response_bytes=4096)
    assert HttpPolicy.from_settings(NodeSettings()) == HttpPolicy()


def test_urls_in_string_arguments_of_httpx_logs_are_redacted(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info("retrying %s after %s", "https://u:pw@h/x?k=v", 3)
    assert [r.getMessage() for r in caplog.records] == [
        "retrying https://u:***@h/x?k=*** after 3"]
