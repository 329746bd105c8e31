"""/docs and /redoc from a real `flowloom serve`: every asset local, both pages open with
API keys set, and both drawn by Chromium with every request off this server refused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.app.test_serve import Server

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
KEY = "s3cret"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "spec-url") and v]


def links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("docs"))
    started.env["FLOWLOOM_API_KEYS"] = KEY
    started.start()
    yield started
    started.kill()


@pytest.mark.parametrize(("page", "assets"), [
    ("/docs", ["/docs/assets/swagger-ui.css", "/docs/assets/favicon.png",
               "/docs/assets/swagger-ui-bundle.js"]),
    ("/redoc", ["/docs/assets/favicon.png", "/openapi.json",
                "/docs/assets/redoc.standalone.js"])])
def test_doc_pages_load_only_local_assets_without_a_key(server: Server, page: str,
                                                        assets: list[str]) -> None:
    answer = httpx.get(server.url + page)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert links(answer.text) == assets
    assert "http://" not in answer.text and "https://" not in answer.text
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    for url in assets:
        asset = httpx.get(server.url + url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert "url: '/openapi.json'" in answer.text or page == "/redoc"
    assert httpx.get(server.url + "/openapi.json").status_code == 200
    # the data behind them still needs the key
    assert httpx.get(server.url + "/workflows").status_code == 401


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.mark.parametrize(("page", "drawn"), [
    ("/docs", ".swagger-ui [data-path='/executions/{execution_id}/events']"),
    ("/redoc", "h1 >> text=Flowloom")])
def test_doc_pages_draw_with_nothing_but_this_server(browser: Any, server: Server,
                                                     page: str, drawn: str,
                                                     tmp_path: Path) -> None:
    context = browser.new_context()
    refused: list[str] = []
    origin = urlsplit(server.url).netloc

    def only_this_server(route: Any) -> None:
        if urlsplit(route.request.url).netloc == origin:
            route.continue_()
        else:  # as offline or behind a firewall
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_server)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.set_default_timeout(20_000)
    opened.goto(server.url + page)
    opened.locator(drawn).first.wait_for(state="visible")
    opened.screenshot(path=str(tmp_path / f"{page.strip('/')}.png"))
    context.close()
    assert refused == []
    # nothing broke; what the policy refused (Redoc's CDN logo) was never requested
    assert [e for e in errors if "violates the following Content Security Policy" not in e
            ] == []
