"""Validation: every problem at once, each with a JSON path naming the node or edge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowloom import load_workflow, validate_workflow
from flowloom.graphs import SpecError
from tests.conftest import chain, t


def paths(document: object, **kwargs: bool) -> dict[str, str]:
    return {p.path: p.message for p in validate_workflow(document, **kwargs)}


def test_valid_document_has_no_problems() -> None:
    doc = {"nodes": [t("a", 1), t("b", "{{ a }}")], "edges": chain("a", "b")}
    assert validate_workflow(doc) == []


def test_every_problem_is_reported_at_once() -> None:
    doc = {"nodes": [
        {"id": "a", "type": "teleport"},
        t("b", "{{ x + }}"),
        t("b", 2),
        {"id": "c", "type": "condition", "config": {"expresion": "true"}},
        {"id": "bad id!", "type": "start"},
    ], "edges": [{"source": "a", "target": "zz"}, {"from": "nope", "to": "b"}]}
    problems = paths(doc)
    assert "unknown node type `teleport`" in problems["$.nodes[0].type"]
    assert "template does not parse" in problems["$.nodes[1].config.output"]
    assert "duplicate node id `b`" in problems["$.nodes[2].id"]
    assert "node `c` (condition)" in problems["$.nodes[3].config.expression"]
    assert "Field required" in problems["$.nodes[3].config.expression"]
    assert "Extra inputs" in problems["$.nodes[3].config.expresion"]
    assert "String should match pattern" in problems["$.nodes[4].id"]
    assert "target `zz` is not a node" in problems["$.edges[0].target"]
    assert problems["$.edges[1].source"] == "edge #1 (nope → b): source `nope` is not a node"
    with pytest.raises(SpecError) as info:
        load_workflow(doc)
    assert len(info.value.problems) == len(problems)
    assert "$.nodes[0].type" in str(info.value)


def test_cycle_is_an_error_naming_the_loop() -> None:
    doc = {"nodes": [t("a", 1), t("b", 2), t("c", 3)],
           "edges": [*chain("a", "b", "c"), {"source": "c", "target": "b"}]}
    [problem] = validate_workflow(doc)
    assert "cycle: `b` → `c` → `b`" in problem.message
    assert "while" in problem.message


def test_a_cycle_does_not_hide_an_unreachable_node() -> None:
    doc = {"nodes": [{"id": "start", "type": "start"}, t("a", 1), t("b", 2), t("lost", 3)],
           "edges": [*chain("start", "a", "b"), {"source": "b", "target": "a"}]}
    assert [(p.path, p.message) for p in validate_workflow(doc)] == [
        ("$.nodes[1]", "cycle: `a` → `b` → `a` (use `while` or `foreach` to repeat)"),
        ("$.nodes[3]", "node `lost` is unreachable: no path leads to it from `start`")]


def test_a_cycle_with_no_way_in_names_its_nodes_unreachable_too() -> None:
    doc = {"nodes": [t("entry", 0), t("a", 1), t("b", 2)],
           "edges": [*chain("a", "b"), {"source": "b", "target": "a"}]}
    assert [(p.path, p.message) for p in validate_workflow(doc)] == [
        ("$.nodes[1]", "cycle: `a` → `b` → `a` (use `while` or `foreach` to repeat)"),
        ("$.nodes[1]", "node `a` is unreachable: no path leads to it from `entry`"),
        ("$.nodes[2]", "node `b` is unreachable: no path leads to it from `entry`")]
    # only a cycle, nothing outside it: no entry node, and the cycle alone is reported
    [only] = validate_workflow({"nodes": [t("a", 1), t("b", 2)],
                                "edges": [*chain("a", "b"), {"source": "b", "target": "a"}]})
    assert only.message.startswith("cycle: ")


def test_a_bad_node_field_does_not_hide_its_oversized_config_nor_its_edges() -> None:
    doc = {"nodes": [{**t("a", "x" * 11_000), "timeout_s": -1, "retry": {"max_attempts": 0}},
                     t("b", "{{ a }}")], "edges": chain("a", "b")}
    assert [(p.path, p.message) for p in validate_workflow(doc)] == [
        ("$.nodes[0].retry.max_attempts", "node `a`: Input should be greater than or equal to 1"),
        ("$.nodes[0].timeout_s", "node `a`: Input should be greater than 0"),
        ("$.nodes[0].config", "node `a`: config is 11,014 bytes; the limit is 10,240")]
    # a bad config under a bad field is named too
    doc["nodes"][0] = {"id": "a", "type": "condition", "config": {"expresion": "1"},
                       "timeout_s": 99_999}
    assert set(paths(doc)) == {"$.nodes[0].timeout_s", "$.nodes[0].config.expression",
                               "$.nodes[0].config.expresion"}


def test_a_duplicate_node_still_has_its_config_checked() -> None:
    doc = {"nodes": [t("a", 1), {"id": "a", "type": "transform", "config": {"outptu": 2}}]}
    assert [(p.path, p.message) for p in validate_workflow(doc)] == [
        ("$.nodes[1].id", "duplicate node id `a` (also nodes[0])"),
        ("$.nodes[1].config.output", "node `a` (transform): Field required"),
        ("$.nodes[1].config.outptu", "node `a` (transform): Extra inputs are not permitted")]


def test_a_transform_config_typo_is_refused_with_its_path() -> None:
    doc = {"id": "typo", "nodes": [{"id": "a", "type": "transform", "config": {"outptu": 1}}]}
    assert paths(doc) == {
        "$.nodes[0].config.output": "node `a` (transform): Field required",
        "$.nodes[0].config.outptu": "node `a` (transform): Extra inputs are not permitted"}
    # the same shape on the builder's own `transformer` type is its `value`/whole-config form
    builder = {"nodes": [{"id": "a", "type": "transformer", "config": {"value": 1}}]}
    assert validate_workflow(builder) == []
    http = {"nodes": [{"id": "a", "type": "http", "config": {"endpoint": "https://x.test"}}]}
    assert "$.nodes[0].config.endpoint" in paths(http)


def test_self_loop_is_refused() -> None:
    doc = {"nodes": [t("a", 1)], "edges": [{"source": "a", "target": "a"}]}
    assert "cannot feed itself" in validate_workflow(doc)[0].message


def test_unreachable_node_from_start() -> None:
    doc = {"nodes": [{"id": "start", "type": "start"}, t("a", 1), t("lost", 2)],
           "edges": chain("start", "a")}
    problems = paths(doc)
    assert problems["$.nodes[2]"] == "node `lost` is unreachable: no path leads to it from `start`"


@pytest.mark.parametrize(("branch", "source_type", "config"), [
    ("maybe", "condition", {"expression": "true"}),
    ("true", "transform", {"output": 1}),
    ("medium", "switch", {"expression": "1", "cases": {"small": 1, "big": 2}}),
])
def test_branch_labels_must_fit_the_node_type(branch: str, source_type: str,
                                              config: dict) -> None:
    doc = {"nodes": [{"id": "s", "type": source_type, "config": config}, t("x", 1)],
           "edges": [{"source": "s", "target": "x", "branch": branch}]}
    problems = paths(doc)
    assert f"`{branch}`" in problems["$.nodes[0]"]
    assert "node `s`" in problems["$.nodes[0]"]


def test_error_branch_is_allowed_on_any_node() -> None:
    doc = {"nodes": [t("a", 1), t("b", 1)],
           "edges": [{"source": "a", "target": "b", "branch": "error"}]}
    assert validate_workflow(doc) == []


def test_condition_with_one_branch_is_a_warning_only() -> None:
    doc = {"nodes": [{"id": "c", "type": "condition", "config": {"expression": "true"}},
                     t("x", 1)], "edges": [{"source": "c", "target": "x", "branch": "true"}]}
    assert validate_workflow(doc) == []
    [warning] = validate_workflow(doc, include_warnings=True)
    assert warning.level == "warning" and "`false`" in warning.message


def test_expressions_that_do_not_parse() -> None:
    doc = {"nodes": [{"id": "c", "type": "condition", "config": {"expression": "a and"}}]}
    assert "expression does not parse" in paths(doc)["$.nodes[0].config.expression"]


def test_limits_of_the_spec() -> None:
    many = {"nodes": [t(f"n{i}", i) for i in range(1001)]}
    assert "1,001 nodes; the limit is 1,000" in paths(many)["$.nodes"]
    big = {"nodes": [t("a", "x" * 11_000)]}
    assert "the limit is 10,240" in paths(big)["$.nodes[0].config"]
    huge = {"nodes": [t(f"n{i}", "x" * 9000) for i in range(120)]}
    assert "the limit is 1,048,576" in paths(huge)["$"]
    body: dict = {"nodes": [t("leaf", 1)]}
    for depth in range(5):
        body = {"nodes": [{"id": f"l{depth}", "type": "foreach",
                           "config": {"items": "[1]", "body": body}}]}
    problems = paths(body)
    deepest = "$" + ".nodes[0].config.body" * 5
    assert "nesting depth 6 exceeds the limit of 5" in problems[deepest]


def test_nested_body_problems_carry_their_full_path() -> None:
    doc = {"nodes": [{"id": "each", "type": "foreach", "config": {
        "items": "[1]", "body": {"nodes": [t("x", "{{ }}"), {"id": "y", "type": "nah"}]}}}]}
    problems = paths(doc)
    assert "$.nodes[0].config.body.nodes[0].config.output" in problems
    assert "$.nodes[0].config.body.nodes[1].type" in problems


def test_node_settings_are_checked() -> None:
    doc = {"nodes": [t("a", 1, timeout_s=7200, on_error="ignore", retry={"max_attempts": 0})]}
    problems = paths(doc)
    assert "less than or equal to 3600" in problems["$.nodes[0].timeout_s"]
    assert "$.nodes[0].on_error" in problems
    assert "$.nodes[0].retry.max_attempts" in problems


def test_inputs_schema_must_be_a_json_schema() -> None:
    doc = {"inputs_schema": {"type": "nonsense"}, "nodes": [t("a", 1)]}
    assert "not a valid JSON Schema" in paths(doc)["$.inputs_schema.type"]


def test_workflow_id_slug() -> None:
    assert "$.id" in paths({"id": "Not A Slug", "nodes": [t("a", 1)]})


def test_unknown_keys_are_kept_and_ignored() -> None:
    doc = {"nodes": [{**t("a", 1), "position": {"x": 1, "y": 2}}], "edges": [],
           "builder": {"zoom": 2}}
    spec = load_workflow(doc)
    dumped = spec.model_dump()
    assert dumped["builder"] == {"zoom": 2}
    assert dumped["nodes"][0]["position"] == {"x": 1, "y": 2}


def test_load_accepts_dict_json_text_and_path(tmp_path: Path) -> None:
    doc = {"nodes": [t("a", 1)]}
    file = tmp_path / "wf.json"
    file.write_text(json.dumps(doc))
    for form in (doc, json.dumps(doc), file, str(file)):
        assert load_workflow(form).nodes[0].id == "a"


def test_bad_json_is_a_spec_error_with_position() -> None:
    with pytest.raises(SpecError, match=r"not valid JSON: .* line 1 column 2"):
        load_workflow("{nope")


def test_edge_aliases_from_to() -> None:
    spec = load_workflow({"nodes": [t("a", 1), t("b", 2)], "edges": [{"from": "a", "to": "b"}]})
    assert (spec.edges[0].source, spec.edges[0].target) == ("a", "b")
