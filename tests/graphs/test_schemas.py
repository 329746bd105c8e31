"""JSON Schemas never fetch: `$ref` resolves inside the document or is a problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowloom import validate_workflow
from flowloom.graphs.schemas import InvalidSchema, validation_errors
from tests.conftest import t
from tests.servers import SchemaHost

SECRET = "hunter2-top-secret"


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "secret.json"
    path.write_text(f'{{"enum": ["{SECRET}"], "description": "{SECRET}"}}')
    return path.as_uri()


def problems(doc: dict[str, Any]) -> dict[str, str]:
    return {p.path: p.message for p in validate_workflow(doc)}


def approval(schema: Any) -> dict[str, Any]:
    return {"id": "ok", "type": "approval", "config": {"prompt": "Ship?", "schema": schema}}


def test_remote_ref_in_inputs_schema_is_a_problem_not_a_fetch(
        schema_host: tuple[SchemaHost, str]) -> None:
    host, base = schema_host
    doc = {"inputs_schema": {"properties": {"n": {"$ref": f"{base}/n.json"}}},
           "nodes": [t("a", 1)]}
    found = problems(doc)
    assert list(found) == ["$.inputs_schema.properties.n.$ref"]
    assert found["$.inputs_schema.properties.n.$ref"] == (
        f"`{base}/n.json` does not resolve inside the document; references to other "
        "documents are not fetched")
    assert host.requests == 0


def test_remote_ref_in_approval_schema_names_the_node(
        schema_host: tuple[SchemaHost, str]) -> None:
    host, base = schema_host
    found = problems({"nodes": [approval({"$ref": f"{base}/answer.json"})]})
    assert list(found) == ["$.nodes[0].config.schema"]
    assert found["$.nodes[0].config.schema"].startswith(
        f"node `ok` (approval): schema.$ref: `{base}/answer.json` does not resolve")
    assert host.requests == 0


def test_validating_a_value_never_fetches(schema_host: tuple[SchemaHost, str]) -> None:
    host, base = schema_host
    with pytest.raises(InvalidSchema) as caught:
        validation_errors({"$ref": f"{base}/x"}, 5)
    assert caught.value.path == "$.$ref"
    assert host.requests == 0


def test_file_ref_is_refused_without_echoing_the_file(secret_file: str) -> None:
    doc = {"inputs_schema": {"$ref": secret_file}, "nodes": [approval({"$ref": secret_file})]}
    found = problems(doc)
    assert sorted(found) == ["$.inputs_schema.$ref", "$.nodes[0].config.schema"]
    assert all(SECRET not in message for message in found.values())
    with pytest.raises(InvalidSchema) as caught:
        validation_errors({"$ref": secret_file}, "anything")
    assert SECRET not in str(caught.value)


def test_local_refs_keep_working() -> None:
    schema = {"$defs": {"amount": {"type": "integer", "minimum": 1}},
              "type": "object", "properties": {"n": {"$ref": "#/$defs/amount"}}}
    assert problems({"inputs_schema": schema, "nodes": [approval(schema)]}) == {}
    assert validation_errors(schema, {"n": 3}) == []
    assert validation_errors(schema, {"n": 0}) == [("$.n", "0 is less than the minimum of 1")]


def test_a_dangling_local_ref_is_a_problem() -> None:
    found = problems({"inputs_schema": {"$ref": "#/$defs/missing"}, "nodes": [t("a", 1)]})
    assert list(found) == ["$.inputs_schema.$ref"]


def test_ref_shaped_data_is_not_a_reference() -> None:
    schema = {"const": {"$ref": "http://127.0.0.1:9/x"}}
    assert problems({"inputs_schema": schema, "nodes": [t("a", 1)]}) == {}
    assert validation_errors(schema, {"$ref": "http://127.0.0.1:9/x"}) == []
