"""The run viewer's routes: open pages and scripts, closed data, and the shipped files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from flowloom.app.api.main import create_app
from flowloom.app.settings import load_settings
from flowloom.app.ui.routes import HERE


async def _client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(load_settings(store=f"sqlite:///{tmp_path / 'ui.db'}", api_keys="k1"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def test_pages_and_scripts_are_open_and_the_data_is_not(tmp_path: Path) -> None:
    async for api in _client(tmp_path):
        root = await api.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/ui"
        for path, page in [("/ui", "runs"), ("/ui/runs/abc", "run"), ("/ui/inbox", "inbox"),
                           ("/ui/workflows", "workflows"), ("/ui/workflows/w", "workflow")]:
            response = await api.get(path)
            assert response.status_code == 200, path
            assert f'data-page="{page}"' in response.text
        script = await api.get("/ui/static/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert (await api.get("/ui/static/nope.js")).status_code == 404
        assert (await api.get("/executions")).status_code == 401
        assert (await api.get("/ui/../executions")).status_code in (401, 404)


async def test_an_id_in_the_page_is_escaped(tmp_path: Path) -> None:
    async for api in _client(tmp_path):
        response = await api.get('/ui/runs/x"><img src=x onerror=alert(1)>')
        assert response.status_code == 200
        assert "<img" not in response.text
        assert 'data-id="x&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"' in response.text


def test_every_module_the_pages_import_is_shipped() -> None:
    static = HERE / "static"
    shell = (HERE / "templates" / "shell.html").read_text()
    assert "/ui/static/app.js" in shell and "/ui/static/app.css" in shell
    for script in static.glob("*.js"):
        for line in script.read_text().splitlines():
            if " from \"./" in line or "import(\"./" in line or ': "./' in line:
                for name in [p.split('"')[0] for p in line.split('"./')[1:]]:
                    assert (static / name).is_file(), f"{script.name} imports missing {name}"
