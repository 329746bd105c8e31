"""The four dialects of the spec: detected, converted, valid, and run on real local servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowloom import load_workflow, validate_workflow
from flowloom.graphs.dialects import detect_dialect, to_canonical
from tests.conftest import SPEC_DIR, Runner
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
    # the seed*.json files beside them are this repository's own, not the spec's
    for copy in EXAMPLES.glob("dialect*.json"):
        assert copy.read_text() == (spec_examples / copy.name).read_text(), copy.name
    assert {p.name for p in spec_examples.glob("*.json")} == {
        p.name for p in EXAMPLES.glob("dialect*.json")}


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
    # the seed merges the dependencies' results into the ai step's input
    answer = ("echo: Analyze data\n\nContext: {'process_a': {'data': {'value': 1}}, "
              "'process_b': {'data': {'value': 2}}}")
    assert states["ai_analysis"].output == answer
    assert record.output == answer
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


# --- documents written for the seed systems (seed*.json) ----------------------------

async def test_seed1_scheduled_trigger_runs_with_a_warning(run: Runner) -> None:
    doc = example("seed1-scheduled-trigger.json")
    assert validate_workflow(doc) == []
    [warning] = validate_workflow(doc, include_warnings=True)
    assert warning.as_dict() == {
        "path": "$.nodes[0]", "level": "warning",
        "message": "node `every_morning`: schedule_based trigger settings are not run here: "
                   "the node starts the run with its inputs when the run is started "
                   "(API, CLI or Python)"}
    record = await run(doc, {"name": "Ada"})
    assert record.status == "succeeded", record.errors
    assert record.output == "good morning, Ada"


def test_seed1_event_trigger_of_the_spec_example_warns() -> None:
    [warning] = validate_workflow(example("dialect1-dag.json"), include_warnings=True)
    assert (warning.path, warning.level) == ("$.nodes[0]", "warning")
    assert warning.message.startswith("node `trigger_1`: event_based trigger settings")


async def test_seed2_json_body_result_of_text_and_concat(
        run_with: ServiceRunner, web: tuple[FlakyServer, str], model_stub: ModelStub) -> None:
    server, base = web
    doc = example("seed2-json-body-concat-result.json")
    doc["nodes"][0]["config"]["url"] = f"{base}/echo?key=users"
    record = await run_with(doc)
    assert record.status == "succeeded", record.errors
    assert server.hits["users"][0]["body"] == {"name": "Ada", "tags": ["admin"]}
    outputs = {k: v.output for k, v in record.node_states.items()}
    assert outputs["summarize"] == "echo: Summarize: Ada"
    assert outputs["shout"] == {"result": "ECHO: SUMMARIZE: ADA"}
    assert outputs["joined"] == {"result": "echo: Summarize: Ada / ECHO: SUMMARIZE: ADA"}


def test_seed2_unknown_operations_are_refused_at_validation_naming_the_node() -> None:
    doc = {"name": "w", "nodes": [
        {"id": "avg", "handler": "aggregate", "config": {"inputs": [1], "aggregate_type": "mean"}},
        {"id": "pow", "handler": "compute", "config": {"operation": "log", "a": 1, "b": 2}},
        {"id": "rot", "handler": "transform", "config": {"input": "a", "transform_type": "rot13"}}]}
    assert [p.as_dict() for p in validate_workflow(doc)] == [
        {"path": "$.nodes[0]", "level": "error",
         "message": "node `avg`: aggregate_type 'mean' is not supported here"},
        {"path": "$.nodes[1]", "level": "error",
         "message": "node `pow`: compute operation 'log' is not supported here"},
        {"path": "$.nodes[2]", "level": "error",
         "message": "node `rot`: transform_type 'rot13' is not supported here"}]


async def test_seed3_rules_reach_nested_data_and_ai_gets_its_dependencies(
        run_with: ServiceRunner, model_stub: ModelStub) -> None:
    record = await run_with(example("seed3-nested-data.json"))
    assert record.status == "succeeded", record.errors
    assert record.node_states["process"].output == {"data": {"message": "HELLO"}}
    assert record.output == ("echo: Analyze data\n\nContext: "
                             "{'process': {'data': {'message': 'HELLO'}}}")


def test_seed3_unknown_rule_is_refused_at_validation() -> None:
    doc = {"id": "w", "steps": {
        "in": {"type": "input", "input": {"message": "x"}},
        "p": {"type": "process", "depends_on": ["in"],
              "input": {"rules": [{"type": "transform", "field": "message",
                                   "operation": "slugify"}]}}}}
    [problem] = validate_workflow(doc)
    assert (problem.path, problem.message) == ("$.nodes[1]", (
        "node `p`: process rule {'type': 'transform', 'field': 'message', "
        "'operation': 'slugify'} is not supported here"))


async def test_seed4_data_source_filter_map_and_delay(
        run_with: ServiceRunner, web: tuple[FlakyServer, str]) -> None:
    server, base = web
    doc = example("seed4-builder-nodes.json")
    doc["nodes"][1]["config"]["endpoint"] = f"{base}/echo?key=source"
    users = [{"active": True, "profile": {"name": "Ada"}},
             {"active": False, "profile": {"name": "Bo"}},
             {"active": True, "profile": {"name": "Cy"}}]
    record = await run_with(doc, {"users": users})
    assert record.status == "succeeded", record.errors
    assert len(server.hits["source"]) == 1
    outputs = {k: v.output for k, v in record.node_states.items()}
    assert outputs["verb"] == {"verb": "GET", "asked": "source"}
    assert outputs["active"] == [users[0], users[2]]
    assert outputs["names"] == [{"name": "Ada"}, {"name": "Cy"}]
    assert outputs["pause"] is None
    assert record.node_states["pause"].status == "succeeded"


def test_seed4_filter_without_one_upstream_is_refused() -> None:
    doc = {"name": "w", "nodes": [{"id": "f", "type": "filter", "config": {"condition": "item"}}],
           "edges": []}
    assert [(p.path, p.message) for p in validate_workflow(doc)] == [
        ("$.nodes[0]", "node `f`: a filter without `items` filters its upstream node's "
                       "output; it has 0 upstream nodes"),
        ("$.nodes[0].config.items", "node `f` (filter): Field required")]
