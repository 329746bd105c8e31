"""The four dialects of the spec: detected, converted, valid, and run on real local servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowloom import load_workflow, validate_workflow
from flowloom.graphs.dialects import detect_dialect, to_canonical
from tests.conftest import SPEC_DIR
from tests.servers import FlakyServer, ModelStub, SmtpServer
from tests.service_fixtures import ServiceRunner

# A copy of ../shared/spec/dialect-examples, so a clone of this repository alone tests too.
EXAMPLES = Path(__file__).parent / "dialect_examples"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


@pytest.mark.parametrize(("name", "dialect"), [
    ("dialect1-dag.json", "dag"), ("dialect2-handlers.json", "handlers"),
    ("dialect3-steps.json", "steps"), ("dialect4-from-to.json", "from-to")])
def test_each_example_is_detected_and_converts_to_a_valid_workflow(name: str,
                                                                   dialect: str) -> None:
    doc = example(name)
    assert detect_dialect(doc) == dialect
    assert validate_workflow(doc) == []
    _, canonical = to_canonical(doc)
    assert validate_workflow(canonical) == []
    spec = load_workflow(doc)
    assert {n.type for n in spec.nodes} <= {"start", "action", "http", "ai", "transform",
                                            "end", "email"}


def test_the_copies_match_the_spec_when_it_is_beside_the_repository() -> None:
    spec_examples = SPEC_DIR / "dialect-examples"
    if not spec_examples.is_dir():
        pytest.skip("../shared/spec is not beside this clone")
    for copy in EXAMPLES.glob("*.json"):
        assert copy.read_text() == (spec_examples / copy.name).read_text(), copy.name
    assert {p.name for p in spec_examples.glob("*.json")} == {
        p.name for p in EXAMPLES.glob("*.json")}


def test_canonical_documents_are_left_alone() -> None:
    doc = {"nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}], "edges": []}
    assert to_canonical(doc) == ("canonical", doc)


async def test_dialect1_dag_runs_its_action(run_with: ServiceRunner,
                                            web: tuple[FlakyServer, str]) -> None:
    server, _ = web
    record = await run_with(example("dialect1-dag.json"), {"subject": "Q3 report"})
    assert record.status == "succeeded", record.errors
    assert record.node_states["trigger_1"].output == {"subject": "Q3 report"}
    assert record.output["arguments"] == {"channel": "#general",
                                          "message": "New email received: Q3 report"}
    assert server.hits["tool:send_message"][0]["body"]["connected_account_id"] == "slack_conn_1"


async def test_dialect2_handlers_run(run_with: ServiceRunner, web: tuple[FlakyServer, str],
                                     model_stub: ModelStub) -> None:
    _, base = web
    doc = example("dialect2-handlers.json")
    # No internet here: the external service is a local server standing in for it.
    doc["nodes"][0]["config"]["url"] = f"{base}/echo?key=users"
    record = await run_with(doc)
    assert record.status == "succeeded", record.errors
    outputs = {k: v.output for k, v in record.node_states.items()}
    assert outputs["add"] == {"result": 3}
    assert outputs["shout"] == {"result": "HELLO"}
    assert outputs["collect"] == {"result": 7}
    assert outputs["fetch_data"]["status"] == 200
    prompt = model_stub.requests[0]["messages"][-1]["content"]
    assert prompt.startswith("Analyze this user data: {") and "'users'" in prompt
    assert load_workflow(doc).node("analyze_with_llm").timeout_s == 600


async def test_dialect3_steps_run(run_with: ServiceRunner, model_stub: ModelStub) -> None:
    record = await run_with(example("dialect3-steps.json"))
    assert record.status == "succeeded", record.errors
    states = record.node_states
    assert states["process_a"].output == {"data": {"value": 1}}
    assert states["process_b"].output == {"data": {"value": 2}}
    assert states["ai_analysis"].output == "echo: Analyze data"
    assert record.output == "echo: Analyze data"
    assert load_workflow(example("dialect3-steps.json")).node("process_b").retry.max_attempts == 4


async def test_dialect3_process_rules_transform_fields(run_with: ServiceRunner) -> None:
    doc = {"id": "rules", "steps": {
        "in": {"type": "input", "input": {"message": "hi there", "n": 1}},
        "up": {"type": "process", "depends_on": ["in"],
               "input": {"rules": [{"type": "transform", "field": "message",
                                    "operation": "uppercase"}]}}}}
    record = await run_with(doc)
    assert record.output == {"message": "HI THERE", "n": 1}


async def test_dialect4_from_to_runs_ai_then_email(run_with: ServiceRunner, smtp: SmtpServer,
                                                   model_stub: ModelStub) -> None:
    record = await run_with(example("dialect4-from-to.json"),
                            {"user_name": "John", "email": "john@example.com"})
    assert record.status == "succeeded", record.errors
    assert record.node_states["ai1"].output == "echo: Say hello to John"
    sent = model_stub.requests[0]
    assert sent["model"] == "google/gemini-2.0-flash-exp:free"
    assert sent["messages"][0] == {"role": "system", "content": "You are a helpful assistant"}
    [mail] = smtp.inbox.messages
    assert mail["To"] == "john@example.com"
    assert mail.get_payload(decode=True).decode().strip() == "AI said: echo: Say hello to John"
    spec = load_workflow(example("dialect4-from-to.json"))
    assert spec.model_dump()["metadata"]["author"] == "Me"  # unknown keys kept
