"""Dialect conversion as a property (issue 16): what a document converts to depends on its
content, not on the order the keys of its document, nodes, edges and steps were written
in (but for the order of the node and edge lists, which follows it and means nothing);
converting a converted document again changes nothing, and it makes the same workflow
after a trip through JSON text and after a trip through the loaded spec."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowloom import load_workflow
from flowloom.graphs.dialects import detect_dialect, to_canonical
from tests.graphs.test_dialects import EXAMPLES

DOCUMENTS = sorted(p.name for p in EXAMPLES.glob("*.json"))


def shuffled(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """`value` with the keys of its structural objects in another order: the document,
    its nodes, edges and steps (depth 2 and up is a node's data: a `mapping`'s key order
    is the order of the object it makes, so it stays)."""
    if isinstance(value, dict):
        keys = list(value)
        if depth <= 2:
            rng.shuffle(keys)
        return {k: shuffled(value[k], rng, depth + 1) for k in keys}
    if isinstance(value, list):
        return [shuffled(v, rng, depth + 1) for v in value]
    return value


def spec_of(doc: Any) -> dict[str, Any]:
    return load_workflow(doc).model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize("name", DOCUMENTS)
@settings(max_examples=15, deadline=None)
@given(rng=st.randoms(use_true_random=False))
def test_conversion_depends_on_content_not_key_order(name: str, rng: random.Random) -> None:
    doc = json.loads((EXAMPLES / name).read_text())
    dialect, canonical = to_canonical(doc)
    again_dialect, again = to_canonical(shuffled(doc, rng))
    assert again_dialect == dialect == detect_dialect(doc)
    assert as_graph(again) == as_graph(canonical)


def as_graph(doc: dict[str, Any]) -> str:
    """A workflow as its content: node and edge lists in a set order (a `steps` object's
    keys come in the order written, and with them the node list), objects' keys sorted."""
    ordered = {**doc, "nodes": sorted(doc["nodes"], key=lambda n: n["id"]),
               "edges": sorted(doc.get("edges", []),
                               key=lambda e: json.dumps(e, sort_keys=True))}
    return json.dumps(ordered, sort_keys=True)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_a_converted_document_is_canonical_and_round_trips(name: str) -> None:
    doc = json.loads((EXAMPLES / name).read_text())
    _, canonical = to_canonical(doc)
    assert to_canonical(canonical)[1] == canonical  # (`from`/`to` edges keep their name)
    spec = spec_of(doc)
    assert spec_of(json.loads(json.dumps(canonical))) == spec
    assert spec_of(spec) == spec  # the loaded spec, dumped, loads to itself
