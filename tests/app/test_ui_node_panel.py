"""The run viewer's node panel in headless Chromium: a node's config as rendered for the
run (and nothing secret anywhere), and a running foreach's `started/total` items."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.app import test_ui as ui
from tests.app.test_serve import Server
from tests.servers import ServerThread

expect = ui.expect
pytestmark = pytest.mark.slow
# The viewer's fixtures (Chromium, `flowloom serve`, a 1280x800 page), shared by name.
browser, server, page = ui.browser, ui.server, ui.page


class Upstream:
    """A local API: `/api` answers at once and keeps what it got; `/hold` keeps each
    request until the test releases them all."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.held = 0
        self.release = threading.Event()

    async def api(self, request: Request) -> Response:
        self.got.append({"authorization": request.headers.get("authorization"),
                         "query": dict(request.query_params)})
        return JSONResponse({"ok": True})

    async def hold(self, request: Request) -> Response:
        self.held += 1
        # bounded so that a failing test cannot leave the server thread stuck
        await asyncio.to_thread(self.release.wait, 120)
        return JSONResponse({"item": request.query_params.get("i")})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api", self.api), Route("/hold", self.hold)])


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    api = Upstream()
    with ServerThread(api.app()) as thread:
        try:
            yield api, thread.url
        finally:
            api.release.set()


def event_log(server: Server, run_id: str) -> str:
    """The run's whole event log as the SSE route sends it (it ends after run.finished)."""
    with httpx.stream("GET", f"{server.url}/executions/{run_id}/events", timeout=30) as got:
        return "".join(got.iter_text())


def finished(server: Server, run_id: str) -> dict[str, Any]:
    for _ in range(600):  # a generous bound: only a hang trips it
        record = httpx.get(f"{server.url}/executions/{run_id}").json()
        if record["status"] in ("succeeded", "failed", "cancelled"):
            return dict(record)
        time.sleep(0.05)
    pytest.fail(f"run {run_id} never finished")


TOKEN, QUERY_SECRET = "tok-9Zx-live", "QSECRET42"


def test_the_panel_shows_the_rendered_config_without_its_secrets(
        server: Server, page: Any, upstream: tuple[Upstream, str]) -> None:
    api, base = upstream
    workflow = {"id": "rendered", "nodes": [{"id": "call", "type": "http", "config": {
        "url": base + "/api?key={{ inputs.k | upper }}&page={{ inputs.page }}",
        "headers": {"Authorization": "Bearer {{ inputs.parts | join('') }}",
                    "Accept": "application/json"}}}]}
    # Both secrets are made by the templates: neither is in the inputs or the document.
    run_id = ui.start(server, workflow, {"k": "qsecret42", "page": 3,
                                         "parts": ["tok", "-9Zx", "-live"]})
    record = finished(server, run_id)
    assert record["status"] == "succeeded", record["errors"]
    assert api.got == [{"authorization": f"Bearer {TOKEN}",
                        "query": {"key": QUERY_SECRET, "page": "3"}}]
    page.goto(f"{server.url}/ui/runs/{run_id}")
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    page.locator('svg.graph .node[data-node-id="call"]').click()
    expect(page.locator("#panel-node")).to_have_text("call")
    shown = page.locator("#panel-config")
    expect(shown).to_contain_text(f'"url": "{base}/api?key=***&page=***"')
    expect(shown).to_contain_text('"Authorization": "[redacted]"')
    expect(shown).to_contain_text('"Accept": "application/json"')
    expect(shown).to_contain_text('"method": "GET"')  # not templated: as written
    written = page.locator("#panel-config-written")
    written.locator("summary").click()
    expect(written).to_contain_text("Bearer {{ inputs.parts | join('') }}")
    ui.shot(page, "run-rendered-config")
    assert record["node_states"]["call"]["config"]["headers"]["Authorization"] == "[redacted]"
    log = event_log(server, run_id)
    assert '"event":"run.finished"' in log.replace(" ", "")
    for secret in (TOKEN, QUERY_SECRET):
        assert secret not in httpx.get(f"{server.url}/executions/{run_id}").text
        assert secret not in log
        assert secret not in page.content()
        assert secret not in page.locator("body").inner_text()


def test_a_running_foreach_shows_its_items_started_of_its_total(
        server: Server, page: Any, upstream: tuple[Upstream, str]) -> None:
    api, base = upstream
    workflow = {"id": "held-items", "nodes": [{"id": "each", "type": "foreach", "config": {
        "items": "{{ range(5) | list }}", "max_concurrency": 1, "body": {"nodes": [
            {"id": "call", "type": "http", "config": {"url": base + "/hold?i={{ item }}"}}]}}}]}
    run_id = ui.start(server, workflow)
    page.goto(f"{server.url}/ui/runs/{run_id}")
    each = page.locator('svg.graph .node[data-node-id="each"]')
    # item 0 is held by the server, one item at a time: 1 of 5 started until released
    expect(each.locator(":scope > .counts")).to_have_text("1/5 items")
    expect(each).to_have_attribute("data-status", "running")
    assert api.held == 1
    each.click(position={"x": 20, "y": 20})
    expect(page.locator("#panel-items")).to_have_text("1/5 items")
    ui.shot(page, "run-foreach-total")
    for _ in range(600):  # the live record holds it too (written less often than events)
        state = httpx.get(f"{server.url}/executions/{run_id}").json()["node_states"].get("each")
        if state and state.get("items_total") is not None:
            break
        time.sleep(0.05)
    assert state["items_total"] == 5 and state["status"] == "running"
    assert api.held == 1
    api.release.set()
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    expect(each.locator(":scope > .counts")).to_have_text("5 items")
    expect(page.locator("#panel-items")).to_have_text(re.compile(r"^5 items$"))
    assert api.held == 5
