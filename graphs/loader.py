"""Reading a workflow from a dict, JSON text or a path, in any accepted dialect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowloom.graphs.dialects import DIALECT_PROBLEM, to_canonical
from flowloom.graphs.errors import Problem, SpecError
from flowloom.graphs.nodetype import NodeTypes
from flowloom.graphs.spec import WorkflowSpec
from flowloom.graphs.validate import validate_workflow as _validate_canonical


def read_document(document: Any) -> dict[str, Any]:
    """The raw document as a dict. Unreadable files raise OSError; bad JSON, SpecError."""
    if isinstance(document, WorkflowSpec):
        return document.model_dump(mode="json", exclude_none=True)
    if isinstance(document, dict):
        return document
    if isinstance(document, Path) or (isinstance(document, str)
                                      and not document.lstrip().startswith(("{", "["))):
        text = Path(document).read_text(encoding="utf-8")
    elif isinstance(document, str | bytes):
        text = document.decode() if isinstance(document, bytes) else document
    else:
        raise SpecError([Problem("$", f"expected a dict, JSON text or a path, "
                                      f"got {type(document).__name__}")])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError([Problem("$", f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                      f"column {exc.colno}")]) from None
    if not isinstance(data, dict):
        raise SpecError([Problem("$", "a workflow must be a JSON object")])
    return data


def canonical_document(document: Any) -> tuple[str, dict[str, Any]]:
    """The dialect detected and the document converted to the canonical format."""
    return to_canonical(read_document(document))


def validate_workflow(document: Any, node_types: NodeTypes, *,
                      include_warnings: bool = False) -> list[Problem]:
    """Every problem of a document in any dialect; [] when it is valid."""
    try:
        _, doc = canonical_document(document)
    except SpecError as exc:
        return exc.problems
    problems = _dialect_problems(doc) + _validate_canonical(doc, node_types,
                                                            include_warnings=True)
    return [p for p in problems if include_warnings or p.level == "error"]


def _dialect_problems(doc: dict[str, Any]) -> list[Problem]:
    """What the dialect converter marked as not runnable here (or run differently)."""
    problems: list[Problem] = []
    nodes = doc.get("nodes")
    for i, node in enumerate(nodes if isinstance(nodes, list) else []):
        mark = node.get(DIALECT_PROBLEM) if isinstance(node, dict) else None
        if isinstance(mark, dict):
            problems.append(Problem(f"$.nodes[{i}]", f"node `{node.get('id')}`: "
                                    f"{mark.get('message')}", level=str(mark.get("level"))))
    return problems


def load_workflow(document: Any, node_types: NodeTypes) -> WorkflowSpec:
    """The canonical model of a document; raises one SpecError listing every problem."""
    _, doc = canonical_document(document)
    problems = [p for p in _dialect_problems(doc) if p.level == "error"]
    problems += _validate_canonical(doc, node_types)
    if problems:
        raise SpecError(problems)
    return WorkflowSpec.model_validate(doc)
