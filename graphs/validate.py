"""Every problem of a workflow document at once, each located by a JSON path."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from flowloom.graphs.errors import Problem
from flowloom.graphs.expressions import is_template, syntax_problem
from flowloom.graphs.limits import not_json
from flowloom.graphs.nodetype import NodeTypes
from flowloom.graphs.schemas import schema_problems
from flowloom.graphs.spec import (
    MAX_DOCUMENT_BYTES,
    MAX_NESTING_DEPTH,
    MAX_NODE_CONFIG_BYTES,
    MAX_NODES,
    EdgeSpec,
    NodeSpec,
    WorkflowSpec,
)

_TOP_LEVEL = ("id", "name", "version", "description", "inputs_schema", "settings", "output")


def _json_path(base: str, loc: tuple[int | str, ...]) -> str:
    path = base
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _pydantic_problems(exc: ValidationError, base: str, who: str) -> Iterator[Problem]:
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function")))
        yield Problem(_json_path(base, loc), f"{who}: {err['msg']}")


def _walk_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_strings(v, f"{path}[{i}]")


def _check_templates(value: Any, path: str, who: str) -> Iterator[Problem]:
    for where, text in _walk_strings(value, path):
        if is_template(text) and (why := syntax_problem(text)):
            yield Problem(where, f"{who}: template does not parse: {why}")


def validate_workflow(
    document: Any, node_types: NodeTypes, *, include_warnings: bool = False
) -> list[Problem]:
    """Problems of a canonical-format document ([] when valid); warnings on request."""
    problems = list(_validate(document, node_types, "$", 1))
    if not include_warnings:
        problems = [p for p in problems if p.level == "error"]
    return problems


def _validate(doc: Any, types: NodeTypes, path: str, depth: int) -> Iterator[Problem]:
    if not isinstance(doc, dict):
        yield Problem(path, f"a workflow must be a JSON object, got {type(doc).__name__}")
        return
    if depth == 1:
        try:
            size = len(json.dumps(doc, default=str, allow_nan=False).encode())
        except ValueError:  # NaN or Infinity (a Python caller's document): JSON has neither
            yield Problem(*not_json(doc))
            return
        if size > MAX_DOCUMENT_BYTES:
            yield Problem(path, f"document is {size:,} bytes; the limit is {MAX_DOCUMENT_BYTES:,}")
    if depth > MAX_NESTING_DEPTH:
        yield Problem(path, f"nesting depth {depth} exceeds the limit of {MAX_NESTING_DEPTH}")
        return

    top = {k: doc[k] for k in _TOP_LEVEL if k in doc}
    try:
        WorkflowSpec.model_validate({**top, "nodes": []})
    except ValidationError as exc:
        yield from _pydantic_problems(exc, path, "workflow")
    schema = doc.get("inputs_schema")
    if isinstance(schema, dict):
        yield from schema_problems(schema, f"{path}.inputs_schema")
    if "output" in doc:
        yield from _check_templates(doc["output"], f"{path}.output", "workflow output")

    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        yield Problem(f"{path}.nodes", "a workflow needs a non-empty list of nodes")
        return
    if len(raw_nodes) > MAX_NODES:
        yield Problem(f"{path}.nodes", f"{len(raw_nodes):,} nodes; the limit is {MAX_NODES:,}")

    nodes: dict[str, tuple[int, NodeSpec]] = {}
    for i, raw in enumerate(raw_nodes):
        npath = f"{path}.nodes[{i}]"
        node_id = raw.get("id") if isinstance(raw, dict) else None
        who = f"node `{node_id}`" if isinstance(node_id, str) else f"node #{i}"
        config_ok = True
        try:
            node = NodeSpec.model_validate(raw)
        except ValidationError as exc:
            yield from _pydantic_problems(exc, npath, who)
            # Go on with what is valid (a bad `timeout_s` must not hide a bad config).
            salvaged, config_ok = _salvage(raw, exc)
            if salvaged is None:
                continue
            node = salvaged
        if node.id in nodes:
            first = nodes[node.id][0]
            yield Problem(f"{npath}.id", f"duplicate node id `{node.id}` (also nodes[{first}])")
        else:
            nodes[node.id] = (i, node)
        if config_ok:
            yield from _validate_node(node, types, npath, who, depth)

    edges = yield from _validate_edges(doc.get("edges", []), path, nodes)
    yield from _validate_graph(nodes, edges, types, path)


def _salvage(raw: Any, exc: ValidationError) -> tuple[NodeSpec | None, bool]:
    """The node without its invalid fields (their defaults instead), so its config and
    its edges are still checked; None when its id or type is unusable. The flag says
    whether its config itself is checkable."""
    failed = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
    if not isinstance(raw, dict) or failed & {"id", "type"}:
        return None, False
    try:
        return NodeSpec.model_validate({k: v for k, v in raw.items() if k not in failed}), (
            "config" not in failed)
    except ValidationError:
        return None, False


def _validate_node(
    node: NodeSpec, types: NodeTypes, npath: str, who: str, depth: int
) -> Iterator[Problem]:
    node_type = types.get(node.type)
    if node_type is None:
        known = ", ".join(sorted(types))
        yield Problem(f"{npath}.type", f"{who}: unknown node type `{node.type}` (known: {known})")
        return
    size = len(json.dumps(node.config, default=str).encode())
    if size > MAX_NODE_CONFIG_BYTES:
        yield Problem(f"{npath}.config",
                      f"{who}: config is {size:,} bytes; the limit is {MAX_NODE_CONFIG_BYTES:,}")
    try:
        config: BaseModel = node_type.Config.model_validate(node.config)
    except ValidationError as exc:
        yield from _pydantic_problems(exc, f"{npath}.config", f"{who} ({node.type})")
        return
    for field in node_type.templates:
        yield from _check_templates(getattr(config, field), f"{npath}.config.{field}", who)
    for field in node_type.expressions:
        text = getattr(config, field)
        if isinstance(text, str) and (why := syntax_problem(text, expression=True)):
            yield Problem(f"{npath}.config.{field}", f"{who}: expression does not parse: {why}")
    for field, body in node_type.nested_bodies(node.config).items():
        yield from _validate(body, types, f"{npath}.config.{field}", depth + 1)


def _validate_edges(
    raw_edges: Any, path: str, nodes: dict[str, tuple[int, NodeSpec]]
) -> Generator[Problem, None, list[EdgeSpec]]:
    edges: list[EdgeSpec] = []
    if not isinstance(raw_edges, list):
        yield Problem(f"{path}.edges", "edges must be a list")
        return edges
    seen: set[tuple[str, str, str]] = set()
    for i, raw in enumerate(raw_edges):
        epath = f"{path}.edges[{i}]"
        try:
            edge = EdgeSpec.model_validate(raw)
        except ValidationError as exc:
            yield from _pydantic_problems(exc, epath, f"edge #{i}")
            continue
        who = f"edge #{i} ({edge.source} → {edge.target})"
        ok = True
        for end in ("source", "target"):
            if getattr(edge, end) not in nodes:
                ok = False
                missing = getattr(edge, end)
                yield Problem(f"{epath}.{end}", f"{who}: {end} `{missing}` is not a node")
        if not ok:
            continue
        if edge.source == edge.target:
            yield Problem(epath, f"{who}: a node cannot feed itself (use `while` to repeat)")
            continue
        key = (edge.source, edge.target, edge.port)
        if key in seen:
            yield Problem(epath, f"{who}: duplicate edge")
            continue
        seen.add(key)
        edges.append(edge)
    return edges


def _validate_graph(
    nodes: dict[str, tuple[int, NodeSpec]], edges: list[EdgeSpec], types: NodeTypes, path: str
) -> Iterator[Problem]:
    labels: dict[str, set[str]] = {}
    successors: dict[str, list[str]] = {n: [] for n in nodes}
    has_incoming: set[str] = set()
    for edge in edges:
        successors[edge.source].append(edge.target)
        has_incoming.add(edge.target)
        if edge.branch and edge.branch != "error":
            labels.setdefault(edge.source, set()).add(edge.branch)

    for node_id, used in labels.items():
        i, node = nodes[node_id]
        node_type = types.get(node.type)
        if node_type is None:
            continue
        try:
            config = node_type.Config.model_validate(node.config)
        except ValidationError:
            continue
        for message in node_type.check_ports(config, used):
            yield Problem(f"{path}.nodes[{i}]", f"node `{node_id}`: {message}")

    for node_id, (i, node) in nodes.items():
        kind = types.get(node.type)
        required = kind.required_ports if kind else frozenset[str]()
        missing = required - labels.get(node_id, set())
        if missing:
            yield Problem(f"{path}.nodes[{i}]",
                          f"node `{node_id}`: {node.type} has no `{'`/`'.join(sorted(missing))}` "
                          "branch wired; that path ends the flow", level="warning")

    cycle = _find_cycle(successors)
    if cycle:
        i = nodes[cycle[0]][0]
        yield Problem(f"{path}.nodes[{i}]",
                      "cycle: " + " → ".join(f"`{n}`" for n in [*cycle, cycle[0]])
                      + " (use `while` or `foreach` to repeat)")

    starts = [n for n, (_, node) in nodes.items()
              if getattr(types.get(node.type), "entry", False)]
    entries = starts or [n for n in nodes if n not in has_incoming]
    if not entries:  # every node has an incoming edge: the cycle above says why
        return
    reached = set(entries)
    stack = list(entries)
    while stack:
        for nxt in successors[stack.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                stack.append(nxt)
    for node_id, (i, _) in nodes.items():
        if node_id not in reached:
            yield Problem(f"{path}.nodes[{i}]",
                          f"node `{node_id}` is unreachable: no path leads to it from "
                          + ", ".join(f"`{s}`" for s in entries))


def _find_cycle(successors: dict[str, list[str]]) -> list[str]:
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(successors, white)
    for root in successors:
        if color[root] != white:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(successors[root]))]
        trail = [root]
        color[root] = grey
        while stack:
            node, children = stack[-1]
            for child in children:
                if color[child] == grey:
                    return trail[trail.index(child):]
                if color[child] == white:
                    color[child] = grey
                    trail.append(child)
                    stack.append((child, iter(successors[child])))
                    break
            else:
                color[node] = black
                trail.pop()
                stack.pop()
    return []
