"""Fuzzing the doors a hostile document or input goes through: the loader (every
dialect), the validator and the expression compiler. Whatever comes in, the answer is a
list of problems or our own error, never another exception. Bounded: a few hundred
examples each, no deadline (CI machines are busy)."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowloom import load_workflow, validate_workflow
from flowloom.graphs.errors import ExpressionError, SpecError
from flowloom.graphs.expressions import Expressions, syntax_problem

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(
    allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
ids = st.text(alphabet=string.ascii_letters + string.digits + "_-. ", min_size=0, max_size=10)
types = st.sampled_from(["start", "end", "transform", "condition", "switch", "parallel",
                         "join", "foreach", "while", "filter", "delay", "http", "ai", "email",
                         "action", "approval", "subworkflow", "trigger", "bogus", ""])


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Workflow-shaped documents of every dialect's keys, with wrong types mixed in."""
    node = st.fixed_dictionaries({"id": ids | json_scalars, "type": types | json_scalars},
                                 optional={"config": json_values, "retry": json_values,
                                           "on_error": json_values, "timeout_s": json_values})
    nodes = draw(st.lists(node, max_size=6) | json_scalars)
    names = [n.get("id") for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []
    end = st.sampled_from(names) if names else ids
    edge = st.fixed_dictionaries({"source": end | json_scalars, "target": end | json_scalars},
                                 optional={"branch": json_values, "condition": json_values})
    doc: dict[str, Any] = {"nodes": nodes, "edges": draw(st.lists(edge, max_size=6) | json_scalars)}
    extra = draw(st.dictionaries(st.sampled_from(
        ["id", "version", "inputs_schema", "settings", "output", "dag", "handlers", "steps",
         "from", "to", "workflow", "name"]), json_values, max_size=3))
    return {**doc, **extra}


@FUZZ
@given(documents())
def test_validating_any_document_gives_problems_never_a_crash(doc: dict[str, Any]) -> None:
    problems = validate_workflow(doc)
    assert all(p.path.startswith("$") and p.message for p in problems)
    try:
        spec = load_workflow(doc)
    except SpecError as exc:
        assert exc.problems  # refused with at least one named problem
    else:
        assert problems == [] and spec.nodes


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_loading_any_text_gives_problems_never_a_crash(text: str) -> None:
    # Text starting with `{` or `[`, and bytes, are JSON documents (other text is a path).
    for document in ("{" + text, "[" + text, text.encode("utf-8", "surrogatepass")):
        problems = validate_workflow(document)
        assert problems and all(p.path.startswith("$") and p.message for p in problems)


template_parts = st.sampled_from(
    ["{{", "}}", "{%", "%}", "(", ")", "[", "]", "inputs", "outputs", ".", "|", "upper",
     "length", "x", "1", "'a'", "*", "+", "~", "%", "for", "in", "if", "else", "endfor",
     "range(3)", "loop", " ", "__class__", "attr", "format", "9" * 30, "**", "-"])


@FUZZ
@given(st.lists(template_parts, max_size=25).map("".join))
def test_any_template_compiles_and_renders_or_fails_with_our_error(text: str) -> None:
    expressions = Expressions()
    problem = syntax_problem(text)
    assert problem is None or isinstance(problem, str)
    namespace = {"inputs": {"x": 2, "items": [1, 2]}, "outputs": {"a": "b"}, "run": {}}
    try:
        expressions.render(text, namespace, field="fuzz")
    except ExpressionError as exc:
        assert exc.field == "fuzz" and str(exc)
    try:
        expressions.evaluate(text.replace("{{", "").replace("}}", ""), namespace,
                             field="fuzz")
    except ExpressionError as exc:
        assert exc.field == "fuzz" and str(exc)
