"""A node's config as rendered for the run, in its settle event and the run record:
redacted before either is written, and cut to a size cap."""

from __future__ import annotations

import json
from typing import Any

from flowloom.graphs.redact import REDACTED
from tests.conftest import Runner, t
from tests.servers import FlakyServer, free_port
from tests.service_fixtures import ServiceRunner

Web = tuple[FlakyServer, str]
# Each secret is made by the templates, so it is in no input nor in the document.
INPUTS = {"parts": ["sk", "-live-", "Zq81"], "sig": ["si", "g9x"], "tenant": "acme",
          "page": 2, "pw": ["hun", "ter2"]}
TOKEN, SIG, PASSWORD = "sk-live-Zq81", "sig9x", "hunter2"


def settled(events: list[dict[str, Any]], node_id: str) -> dict[str, Any]:
    [event] = [e for e in events if e.get("node_id") == node_id
               and e["event"] in ("node.succeeded", "node.failed")]
    return event


async def test_an_http_nodes_rendered_config_is_recorded_without_its_secrets(
        run_with: ServiceRunner, web: Web) -> None:
    server, base = web
    doc = {"nodes": [{"id": "call", "type": "http", "config": {
        "method": "POST",
        "url": base + "/flaky?key=rc&sig={{ inputs.sig | join('') }}",
        "headers": {"Authorization": "Bearer {{ inputs.parts | join('') }}",
                    "X-Tenant": "{{ inputs.tenant }}-{{ inputs.parts | join('') }}",
                    "Accept": "application/json"},
        "sensitive_headers": ["x-tenant"],
        "query": {"page": "{{ inputs.page }}"},
        "json": {"user": "ada", "password": "{{ inputs.pw | join('') }}",
                 "note": "{{ inputs.tenant }}"},
        "expect_status": 200}}]}
    record = await run_with(doc, INPUTS)
    assert record.status == "succeeded", record.errors
    [hit] = server.hits["rc"]  # the call itself carried the rendered values
    assert hit["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert hit["headers"]["x-tenant"] == f"acme-{TOKEN}"
    config = {
        "headers": {"Authorization": REDACTED, "X-Tenant": REDACTED,
                    "Accept": "application/json"},
        "json": {"user": "ada", "password": REDACTED, "note": "acme"},
        "url": f"{base}/flaky?key=***&sig=***",
        "query": {"page": "***"}}
    assert record.node_states["call"].config == config
    assert list(record.node_states["call"].config or {}) == list(config)  # render order
    assert settled(run_with.events, "call")["meta"]["config"] == config
    seen = record.model_dump_json() + json.dumps(run_with.events)
    for secret in (TOKEN, SIG, PASSWORD):
        assert secret not in seen


async def test_a_failed_node_keeps_what_it_rendered(run_with: ServiceRunner) -> None:
    url = f"http://127.0.0.1:{free_port()}/x?sig={{{{ inputs.sig | join('') }}}}"
    record = await run_with({"nodes": [{"id": "call", "type": "http", "config": {
        "url": url, "headers": {"X-Api-Key": "{{ inputs.parts | join('') }}"}}}]}, INPUTS)
    assert record.status == "failed"
    port = url.split(":")[2].split("/")[0]
    config = {"headers": {"X-Api-Key": REDACTED}, "url": f"http://127.0.0.1:{port}/x?sig=***"}
    assert record.node_states["call"].config == config
    assert settled(run_with.events, "call")["meta"]["config"] == config
    seen = record.model_dump_json() + json.dumps(run_with.events)
    assert TOKEN not in seen and SIG not in seen


async def test_only_templated_fields_are_kept(run: Runner) -> None:
    doc = {"nodes": [t("plain", {"a": 1}), t("made", "{{ inputs.n * 2 }}"),
                     {"id": "check", "type": "condition",
                      "config": {"expression": "{{ made > 3 }}"}}],
           "edges": [{"source": "plain", "target": "made"},
                     {"source": "made", "target": "check"}]}
    record = await run(doc, {"n": 2})
    states = record.node_states
    assert states["plain"].config is None
    assert states["made"].config == {"output": 4}
    assert states["check"].config == {"expression": True}  # an expression, as evaluated


async def test_a_config_over_the_cap_is_cut_with_a_marker_and_the_output_is_not(
        run: Runner) -> None:
    record = await run({"nodes": [t("big", "{{ 'x' * 20000 }}")]})
    state = record.node_states["big"]
    assert state.output == "x" * 20000
    assert state.config == {"output": {"truncated": True, "size_bytes": 20002,
                                       "preview": '"' + "x" * (16 * 1024 - 1)}}
