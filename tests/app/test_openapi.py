"""What the OpenAPI document says about the event stream matches what it sends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from flowloom.app.api.main import create_app
from flowloom.app.settings import load_settings
from flowloom.graphs.events import EVENT_KINDS
from tests.conftest import chain, t


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(load_settings(store=f"sqlite:///{tmp_path / 'openapi.db'}"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def test_the_event_stream_is_documented_with_the_events_it_sends(
        api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    ok = document["paths"]["/executions/{execution_id}/events"]["get"]["responses"]["200"]
    assert list(ok["content"]) == ["text/event-stream"]
    stream = ok["content"]["text/event-stream"]
    assert stream["x-event-data"] == {"$ref": "#/components/schemas/RunEvent"}
    schemas = document["components"]["schemas"]
    kinds = {schemas[part["$ref"].rsplit("/", 1)[1]]["properties"]["event"]["const"]
             for option in schemas["RunEvent"]["oneOf"] for part in option["allOf"][1:]}
    assert kinds == set(EVENT_KINDS)
    validator = Draft202012Validator({**document, "$ref": "#/components/schemas/RunEvent"})

    def events(text: str) -> list[dict[str, Any]]:
        return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]

    # the schema has teeth: a node event without its node is not one
    assert not validator.is_valid({"seq": 1, "execution_id": "x", "event": "node.started",
                                   "attempt": 1, "at": 1.0})
    # the example and the real events of a run (a handled failure among them) fit it
    for event in events(stream["example"]):
        validator.validate(event)
    doc = {"nodes": [t("a", 1), {"id": "bad", "type": "transform", "on_error": "continue",
                                 "config": {"output": "{{ nope.x }}"}}],
           "edges": chain("a", "bad")}
    run_id = (await api.post("/execute", json={"workflow": doc})).json()["execution_id"]
    sent = events((await api.get(f"/executions/{run_id}/events")).text)
    assert [e["event"] for e in sent][:2] == ["run.started", "node.started"]
    assert "node.failed" in [e["event"] for e in sent]
    for event in sent:
        validator.validate(event)
