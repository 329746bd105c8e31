"""The http node against a real local server: retries, idempotency keys, limits, SSRF."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest

from flowloom.app.services import open_services
from flowloom.app.settings import Settings, load_settings
from flowloom.app.stores.sqlite import SqliteStore
from tests.servers import FlakyServer, ServerThread, free_port
from tests.service_fixtures import ServiceRunner

Web = tuple[FlakyServer, str]
FAST_RETRY = {"max_attempts": 3, "initial_delay_s": 0.05, "backoff": 1, "jitter": False}


def http(node_id: str, url: str, **config: Any) -> dict[str, Any]:
    extra = {k: config.pop(k) for k in ("retry", "timeout_s", "on_error") if k in config}
    return {"id": node_id, "type": "http", "config": {"url": url, **config}, **extra}


async def test_get_with_query_headers_and_parsed_json(run_with: ServiceRunner, web: Web) -> None:
    _, base = web
    record = await run_with({"nodes": [http("call", f"{base}/echo", query={"q": "{{ inputs.q }}"},
                                            headers={"X-Who": "{{ inputs.who }}"})]},
                            {"q": "cats", "who": "ada"})
    out = record.output
    assert out["status"] == 200
    assert out["body"]["query"] == {"q": "cats"}
    assert out["body"]["headers"]["x-who"] == "ada"
    assert out["headers"]["content-type"] == "application/json"


async def test_post_json_carries_idempotency_key(run_with: ServiceRunner, web: Web) -> None:
    server, base = web
    record = await run_with({"nodes": [http("post", f"{base}/echo?key=p", method="POST",
                                            json={"n": "{{ inputs.n }}"})]}, {"n": 3},
                            execution_id="exec-post")
    assert record.output["body"]["json"] == {"n": 3}
    assert server.hits["p"][0]["idempotency_key"] == "exec-post:post"


async def test_503_503_200_succeeds_on_third_attempt_with_one_key(
        run_with: ServiceRunner, web: Web) -> None:
    server, base = web
    record = await run_with({"nodes": [http("f", f"{base}/flaky?key=a&fail=2",
                                            retry=FAST_RETRY)]}, execution_id="flaky-exec")
    assert record.status == "succeeded"
    assert record.output["body"] == {"ok": True, "attempt": 3}
    assert record.node_states["f"].attempts == 3
    keys = {hit["idempotency_key"] for hit in server.hits["a"]}
    assert keys == {"flaky-exec:f"} and len(server.hits["a"]) == 3
    retries = [e for e in run_with.events if e["event"] == "node.retrying"]
    assert len(retries) == 2 and "HTTP 503" in retries[0]["reason"]


async def test_404_fails_at_once(run_with: ServiceRunner, web: Web) -> None:
    server, base = web
    record = await run_with({"nodes": [http("nf", f"{base}/status/404", retry=FAST_RETRY)]})
    assert record.status == "failed"
    assert len(server.hits["status404"]) == 1
    assert record.errors[0].message.startswith("node `nf`: HTTP 404 Not Found from GET")


async def test_expect_status_accepts_listed_codes(run_with: ServiceRunner, web: Web) -> None:
    _, base = web
    record = await run_with({"nodes": [http("nf", f"{base}/status/404", expect_status=[404])]})
    assert record.output["status"] == 404


async def test_retry_after_is_waited(run_with: ServiceRunner, web: Web) -> None:
    server, base = web
    record = await run_with({"nodes": [http("ra", f"{base}/retry-after?key=ra&seconds=2",
                                            retry=FAST_RETRY)]})
    assert record.status == "succeeded"
    first, second = server.hits["ra"]
    assert second["at"] - first["at"] >= 1.9  # clock-ok: a lower bound, load only adds


async def test_retry_after_is_capped_by_max_delay(run_with: ServiceRunner, web: Web) -> None:
    server, base = web
    retry = {**FAST_RETRY, "max_delay_s": 0.3}
    record = await run_with({"nodes": [http("ra", f"{base}/retry-after?key=cap&seconds=30",
                                            retry=retry)]})
    assert record.status == "succeeded"
    first, second = server.hits["cap"]
    # clock-ok: a bound 100 times the 0.3 s cap, the uncapped wait would be 30 s
    assert second["at"] - first["at"] < 30


async def test_timeout_retries_then_fails_naming_the_node(run_with: ServiceRunner,
                                                          web: Web) -> None:
    server, base = web
    record = await run_with({"nodes": [http("slowpoke", f"{base}/slow?seconds=3&key=s",
                                            timeout_s=0.3, retry=FAST_RETRY)]})
    assert record.status == "failed"
    assert record.errors[0].message == "node `slowpoke`: timed out after 0.3s"
    assert len(server.hits["s"]) == 3
    assert record.node_states["slowpoke"].attempts == 3


async def test_response_body_is_capped(node_settings: Settings, run_with: ServiceRunner,
                                       web: Web) -> None:
    _, base = web
    capped = load_settings(**{**node_settings.model_dump(), "http_max_response_bytes": 1000})
    async with open_services(capped) as services:
        record = await run_with.runner({"nodes": [http("big", f"{base}/big?bytes=5000")]},
                                       services=services)
    assert record.status == "failed"
    assert "response body exceeds 1,000 bytes" in record.errors[0].message


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://10.0.0.1/x",
                                 "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/",
                                 "http://localhost:9/", "http://[::ffff:127.0.0.1]:9/"])
async def test_ssrf_guard_refuses_private_addresses(run_with: ServiceRunner,
                                                    node_settings: Settings, url: str) -> None:
    guarded = load_settings(**{**node_settings.model_dump(), "http_allow_private": False})
    async with open_services(guarded) as services:
        record = await run_with.runner({"nodes": [http("ssrf", url)]}, services=services)
    assert record.status == "failed"
    message = record.errors[0].message
    assert "refused to call" in message and "FLOWLOOM_HTTP_ALLOW_PRIVATE=true" in message
    assert record.node_states["ssrf"].attempts == 1


@pytest.mark.parametrize("target", ["http://localhost:{port}/echo",
                                    "http://169.254.169.254/latest/meta-data/",
                                    "http://10.0.0.1/", "http://[::1]:{port}/echo"])
async def test_ssrf_guard_checks_every_redirect(run_with: ServiceRunner, web: Web,
                                                node_settings: Settings, target: str) -> None:
    server, base = web
    port = base.rsplit(":", 1)[1]
    # The test server stands in for a public host: only its exact address is exempted.
    guarded = load_settings(**{**node_settings.model_dump(), "http_allow_private": False,
                               "http_allow_hosts": f"127.0.0.1:{port}"})
    async with open_services(guarded) as services:
        record = await run_with.runner(
            {"nodes": [http("hop", f"{base}/redirect?to={target.format(port=port)}")]},
            services=services)
    assert record.status == "failed"
    assert "refused to call" in record.errors[0].message
    assert not server.hits.get("echo")


async def test_redirects_are_followed_when_allowed(run_with: ServiceRunner, web: Web) -> None:
    _, base = web
    record = await run_with({"nodes": [http("hop", f"{base}/redirect?to={base}/echo")]})
    assert record.output["body"]["method"] == "GET"


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[tuple[FlakyServer, str]]:
    """A second server: another port, so another origin."""
    server = FlakyServer()
    with ServerThread(server.app()) as thread:
        yield server, thread.url


SECRET_HEADERS = {"Authorization": "Bearer a1", "Cookie": "sid=c1",
                  "Proxy-Authorization": "Basic p1", "X-Api-Key": "k1", "X-Trace": "t1"}


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_origin_drops_credentials(
        run_with: ServiceRunner, web: Web, elsewhere: tuple[FlakyServer, str],
        code: int) -> None:
    other, other_base = elsewhere
    other.hits.clear()
    _, base = web
    record = await run_with({"nodes": [http(
        "hop", f"{base}/redirect?code={code}&to={other_base}/echo%3Fkey%3Dx",
        headers=SECRET_HEADERS, sensitive_headers=["x-api-key"])]}, execution_id="creds")
    assert record.status == "succeeded", record.errors
    [hit] = other.hits["x"]
    received = {k: v for k, v in hit["headers"].items() if k.startswith(("x-", "auth", "cook",
                                                                         "proxy"))}
    assert received == {"x-trace": "t1"}
    assert hit["idempotency_key"] == "creds:hop"


async def test_a_redirect_within_the_origin_keeps_credentials(run_with: ServiceRunner,
                                                             web: Web) -> None:
    server, base = web
    record = await run_with({"nodes": [http(
        "hop", f"{base}/redirect?code=302&to=/echo%3Fkey%3Dsame", headers=SECRET_HEADERS,
        sensitive_headers=["X-Api-Key"])]})
    assert record.status == "succeeded", record.errors
    headers = server.hits["same"][0]["headers"]
    assert [headers[k.lower()] for k in SECRET_HEADERS] == ["Bearer a1", "sid=c1", "Basic p1",
                                                            "k1", "t1"]


async def test_userinfo_credentials_stay_on_their_origin(
        run_with: ServiceRunner, web: Web, elsewhere: tuple[FlakyServer, str]) -> None:
    other, other_base = elsewhere
    other.hits.clear()
    _, base = web
    with_user = base.replace("http://", "http://ada:pw@")
    record = await run_with({"nodes": [http(
        "hop", f"{with_user}/redirect?to={other_base}/echo%3Fkey%3Duser")]})
    assert record.status == "succeeded", record.errors
    assert "authorization" not in other.hits["user"][0]["headers"]


# (method, status, same origin) -> (method, body) at the target, as browsers do; a body
# never crosses to another origin.
REDIRECTED = [
    ("POST", 301, True, "GET", None), ("POST", 302, True, "GET", None),
    ("POST", 303, True, "GET", None), ("PUT", 303, True, "GET", None),
    ("POST", 307, True, "POST", {"n": 1}), ("POST", 308, True, "POST", {"n": 1}),
    ("PUT", 302, True, "PUT", {"n": 1}), ("PUT", 307, True, "PUT", {"n": 1}),
    ("POST", 302, False, "GET", None), ("POST", 303, False, "GET", None),
    ("POST", 307, False, "POST", None), ("POST", 308, False, "POST", None),
    ("PUT", 302, False, "PUT", None), ("PUT", 308, False, "PUT", None),
]


@pytest.mark.parametrize(("method", "code", "same", "then", "body"), REDIRECTED)
async def test_what_a_redirect_does_to_method_and_body(
        run_with: ServiceRunner, web: Web, elsewhere: tuple[FlakyServer, str], method: str,
        code: int, same: bool, then: str, body: Any) -> None:
    server, base = web
    other, other_base = elsewhere
    target_server, target = (server, base) if same else (other, other_base)
    target_server.hits.clear()
    record = await run_with({"nodes": [http(
        "hop", f"{base}/redirect?code={code}&to={target}/echo%3Fkey%3Dm", method=method,
        json={"n": 1})]})
    assert record.status == "succeeded", record.errors
    [hit] = target_server.hits["m"]
    assert (hit["method"], hit["body"]) == (then, body)
    assert ("content-type" in hit["headers"]) is (body is not None)


@pytest.mark.parametrize("path", ["/status/404", "/status/503"])
@pytest.mark.parametrize("where", ["server", "closed port"])
async def test_urls_are_redacted_in_errors_records_events_and_logs(
        run_with: ServiceRunner, web: Web, store: SqliteStore,
        caplog: pytest.LogCaptureFixture, path: str, where: str) -> None:
    caplog.set_level(logging.DEBUG)
    _, base = web
    port = base.rsplit(":", 1)[1] if where == "server" else str(free_port())
    url = f"http://ada:s3cr3tpw@127.0.0.1:{port}{path}?token=t0kenval&x=1"
    record = await run_with({"nodes": [http("leaky", url, retry=FAST_RETRY)]},
                            execution_id=f"redact-{where[0]}{path[-3:]}")
    assert record.status == "failed"
    message = record.errors[0].message
    if where == "server":
        code = int(path[-3:])
        assert message.startswith(f"node `leaky`: HTTP {code} {HTTPStatus(code).phrase} from GET "
                                  f"http://ada:***@127.0.0.1:{port}{path}?token=***&x=***")
        assert "HTTP Request: GET http://ada:***@127.0.0.1" in caplog.text
    else:
        assert message.startswith(f"node `leaky`: GET http://ada:***@127.0.0.1:{port}{path}"
                                  "?token=***&x=*** failed: ConnectError")
    stored = await store.get_run(record.execution_id)
    assert stored is not None
    events = await store.list_events(record.execution_id)
    retried = where == "closed port" or path == "/status/503"
    assert any(e["event"] == "node.retrying" for e in events) is retried
    for text in (message, stored.model_dump_json(), json.dumps(events, default=str),
                 caplog.text):
        assert "s3cr3tpw" not in text and "t0kenval" not in text


@pytest.mark.parametrize(("content_type", "body", "shown"), [
    ("text/html", b"<html><head><title>502 Bad Gateway</title></head>\n<body><h1>Oops"
                  b"</h1>\n<p>nginx</p></body></html>", "502 Bad Gateway"),
    ("text/html", b"<html><body>\n<h1>Service\n down</h1></body></html>", "Service"),
    ("application/json", b'{"error": {"message": "quota exceeded", "code": 7}}',
     "quota exceeded"),
    ("application/json", b'{"detail": "no such item"}', "no such item"),
    ("application/json", b'[1, 2]', "[1, 2]"),
    ("text/plain", b"\n\n  first line  \nsecond line", "first line"),
    ("text/plain", b"x" * 500, "x" * 199 + "\u2026"),
])
def test_an_error_body_is_cut_to_one_clean_line(content_type: str, body: bytes,
                                                shown: str) -> None:
    from flowloom.nodes.net import Reply, body_summary
    reply = Reply(status=502, headers={"content-type": content_type}, body=body,
                  url="http://x/")
    assert body_summary(reply) == shown


async def test_an_http_error_inside_a_foreach_names_the_item_path(
        run_with: ServiceRunner, web: tuple[FlakyServer, str]) -> None:
    _, base = web
    body = {"nodes": [http("get", f"{base}/status/404", retry={"max_attempts": 1})]}
    doc = {"nodes": [{"id": "stocks", "type": "foreach",
                      "config": {"items": "[1, 2]", "body": body}}]}
    record = await run_with(doc)
    assert record.status == "failed"
    assert record.node_states["stocks[0].get"].error["message"].startswith(
        "node `stocks[0].get`: HTTP 404 Not Found from GET")
