"""schemathesis against the app's own OpenAPI document: no 5xx for any generated request,
and every response matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from starlette.testclient import TestClient

from flowloom.app.api.main import create_app
from flowloom.app.settings import load_settings


@pytest.fixture(scope="module")
def app_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    folder: Path = tmp_path_factory.mktemp("schema")
    app = create_app(load_settings(store=f"sqlite:///{folder / 'schema.db'}"))
    with TestClient(app) as client:  # runs the lifespan: store, services, run manager
        client.post("/workflows", json={"id": "hello", "nodes": [
            {"id": "a", "type": "transform", "config": {"output": "{{ inputs.x }}"}}]})
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_server_errors_and_responses_match_the_schema(app_schema: object) -> None:
    # schemathesis' pytest plugin does not load under pytest 9: drive hypothesis directly
    checked = 0
    for result in app_schema.get_all_operations():  # type: ignore[attr-defined]
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error, content_type_conformance,
                                           response_schema_conformance])

        check()
        checked += 1
    assert checked >= 15  # every route of http-api.md was exercised
