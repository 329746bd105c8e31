"""Workflow documents of four common engine styles, turned into the canonical format.

Each converter takes the raw document and returns a canonical one (plain dicts); the
loader validates the result like any other document. Unknown keys are carried along.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from flowloom.graphs.expressions import single_expression

Document = dict[str, Any]

# dialect 4 (and visual builders generally) name canonical types differently
TYPE_ALIASES = {
    "ai-processor": "ai",
    "transformer": "transform",
    "data-source": "http",
    "webhook": "http",
}


def detect_dialect(doc: Document) -> str:
    """One of `canonical`, `dag` (1), `handlers` (2), `steps` (3), `from-to` (4)."""
    if doc.get("schema_type") == "dag":
        return "dag"
    if isinstance(doc.get("steps"), dict) and "nodes" not in doc:
        return "steps"
    nodes = doc.get("nodes")
    if isinstance(nodes, list) and any(isinstance(n, dict) and "handler" in n for n in nodes):
        return "handlers"
    edges = doc.get("edges")
    from_to = isinstance(edges, list) and any(isinstance(e, dict) and "from" in e for e in edges)
    aliased = isinstance(nodes, list) and any(
        isinstance(n, dict) and n.get("type") in TYPE_ALIASES for n in nodes)
    return "from-to" if from_to or aliased else "canonical"


def to_canonical(doc: Document) -> tuple[str, Document]:
    dialect = detect_dialect(doc)
    return dialect, CONVERTERS[dialect](doc)


def jinja_literal(value: Any) -> str:
    """A JSON value as a Jinja expression; single-expression templates are inlined."""
    if isinstance(value, str):
        inner = single_expression(value)
        return f"({inner.strip()})" if inner is not None else json.dumps(value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(jinja_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}: {jinja_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return json.dumps(value)


def _rest(d: dict[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in drop}


# --- canonical and dialect 4 -------------------------------------------------------

def _from_to(doc: Document) -> Document:
    out = dict(doc)
    if isinstance(doc.get("nodes"), list):
        out["nodes"] = [
            {**n, "type": TYPE_ALIASES.get(str(n.get("type")), n.get("type"))}
            if isinstance(n, dict) else n
            for n in doc["nodes"]
        ]
        out["nodes"] = [_from_to_config(n) for n in out["nodes"]]
    return out


def _from_to_config(node: Any) -> Any:
    if not isinstance(node, dict) or not isinstance(node.get("config"), dict):
        return node
    config = dict(node["config"])
    if node.get("type") == "http" and "method" not in config:
        config["method"] = "POST" if "body" in config or "json" in config else "GET"
    if node.get("type") == "transform" and "output" not in config:
        config = {"output": config.get("template", config.get("value", config))}
    if node.get("type") == "condition" and "expression" not in config and "condition" in config:
        config["expression"] = config.pop("condition")
    if node.get("type") == "delay" and "seconds" not in config and "duration" in config:
        config["seconds"] = config.pop("duration")
    return {**node, "config": config}


# --- dialect 1: {"schema_type": "dag"} --------------------------------------------

_DAG_TYPES = {
    "trigger": "start", "action": "action", "gateway_if": "condition",
    "gateway_switch": "switch", "parallel": "parallel", "join": "join",
    "loop_while": "while", "loop_foreach": "foreach",
}


def _dag_node(node: dict[str, Any]) -> dict[str, Any]:
    kind = node.get("type")
    data = dict(node.get("data") or {})
    new_type = _DAG_TYPES.get(kind, kind) if isinstance(kind, str) else kind
    if new_type == "start":
        config: dict[str, Any] = {}
        extra = {"trigger": data.get("trigger")} if "trigger" in data else {}
    elif new_type == "action":
        config = {k: data[k] for k in ("tool", "action", "connection_id") if k in data}
        config["input"] = data.get("input_template", data.get("input", {}))
        extra = {}
    elif new_type in ("condition", "switch") and "expression" not in data and "condition" in data:
        config = {**_rest(data, "condition"), "expression": data["condition"]}
        extra = {}
    else:
        config, extra = data, {}
    out = {**_rest(node, "data"), "type": new_type, "config": config, **extra}
    if isinstance(config.get("body"), dict):
        config["body"] = _convert_body(config["body"])
    return out


def _convert_body(body: Document) -> Document:
    return to_canonical(body)[1]


def _dag(doc: Document) -> Document:
    nodes = [_dag_node(n) if isinstance(n, dict) else n for n in doc.get("nodes", [])]
    edges = [_rest(e, "sourceHandle") | ({"branch": e["sourceHandle"]} if e.get("sourceHandle")
             else {}) if isinstance(e, dict) else e for e in doc.get("edges", [])]
    return {**_rest(doc, "schema_type", "nodes", "edges"), "nodes": nodes, "edges": edges,
            "dialect_schema_type": doc.get("schema_type")}


# --- dialect 2: nodes with `handler` and `dependencies` ------------------------------

_ARITHMETIC = {"add": "+", "subtract": "-", "sub": "-", "multiply": "*", "mul": "*",
               "divide": "/", "div": "/", "mod": "%", "power": "**"}
_TEXT_FILTERS = {"uppercase": "upper", "upper": "upper", "lowercase": "lower",
                 "lower": "lower", "capitalize": "capitalize", "title": "title",
                 "trim": "trim", "strip": "trim", "reverse": "reverse", "length": "length"}
_AGGREGATES = {"sum": "sum", "min": "min", "max": "max", "count": "length",
               "list": "list", "unique": "unique|list"}


def _unsupported(what: str) -> str:
    # Kept as a template that fails the node with a clear message when it runs.
    return "{{ " + f"raise_unsupported({json.dumps(what)})" + " }}"


def _handler_node(node: dict[str, Any], http_ids: set[str]) -> dict[str, Any]:
    handler = node.get("handler")
    config = dict(node.get("config") or {})
    base = _rest(node, "handler", "config", "dependencies", "timeout_seconds")
    if "timeout_seconds" in node:
        base["timeout_s"] = node["timeout_seconds"]
    if handler in ("call_external_service", "http_request"):
        config.setdefault("method", "GET")
        return {**base, "type": "http", "config": config}
    if handler == "llm_service":
        return {**base, "type": "ai", "config": _rewrite_results(config, http_ids)}
    if handler == "compute":
        op = _ARITHMETIC.get(str(config.get("operation")))
        expr = (f"{jinja_literal(config.get('a'))} {op} {jinja_literal(config.get('b'))}"
                if op else None)
        result = "{{ " + expr + " }}" if expr else _unsupported(f"compute {config!r}")
        return {**base, "type": "transform", "config": {"output": {"result": result}},
                "source_config": config}
    if handler == "transform":
        flt = _TEXT_FILTERS.get(str(config.get("transform_type")))
        value = jinja_literal(_rewrite_results(config.get("input"), http_ids))
        result = "{{ " + f"{value} | {flt}" + " }}" if flt else _unsupported(
            f"transform {config.get('transform_type')!r}")
        return {**base, "type": "transform", "config": {"output": {"result": result}},
                "source_config": config}
    if handler == "aggregate":
        agg = _AGGREGATES.get(str(config.get("aggregate_type")))
        values = jinja_literal(_rewrite_results(config.get("inputs", []), http_ids))
        result = "{{ " + f"{values} | {agg}" + " }}" if agg else _unsupported(
            f"aggregate {config.get('aggregate_type')!r}")
        return {**base, "type": "transform", "config": {"output": {"result": result}},
                "source_config": config}
    return {**base, "type": handler, "config": config}


def _rewrite_results(value: Any, http_ids: set[str]) -> Any:
    """`{{ fetch.result }}` of an external-service node is its response body here."""
    if isinstance(value, str) and http_ids:
        pattern = r"\b(" + "|".join(map(re.escape, sorted(http_ids))) + r")\.result\b"
        return re.sub(pattern, r"\1.body", value)
    if isinstance(value, dict):
        return {k: _rewrite_results(v, http_ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_results(v, http_ids) for v in value]
    return value


def _handlers(doc: Document) -> Document:
    raw = [n for n in doc.get("nodes", []) if isinstance(n, dict)]
    http_ids = {str(n.get("id")) for n in raw
                if n.get("handler") in ("call_external_service", "http_request")}
    nodes = [_handler_node(n, http_ids) for n in raw]
    edges = [{"source": dep, "target": n.get("id")}
             for n in raw for dep in (n.get("dependencies") or [])]
    return {**_rest(doc, "nodes"), "nodes": nodes, "edges": edges}


# --- dialect 3: {"steps": {...}} with `depends_on` ---------------------------------

def _process_output(spec: dict[str, Any], deps: list[str]) -> Any:
    base = (f"outputs[{json.dumps(deps[0])}]" if len(deps) == 1
            else "{" + ", ".join(f"{json.dumps(d)}: outputs[{json.dumps(d)}]" for d in deps) + "}")
    expr = base
    for rule in (spec.get("input") or {}).get("rules", []):
        flt = _TEXT_FILTERS.get(str(rule.get("operation")))
        field = json.dumps(str(rule.get("field")))
        if flt is None:
            return _unsupported(f"process rule {rule!r}")
        expr = (f"(dict({expr}, **{{{field}: ({expr})[{field}] | {flt}}}) "
                f"if {field} in ({expr}) else ({expr}))")
    return "{{ " + expr + " }}"


def _steps(doc: Document) -> Document:
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for step_id, spec in doc["steps"].items():
        spec = spec if isinstance(spec, dict) else {}
        deps = [d for d in (spec.get("depends_on") or []) if isinstance(d, str)]
        kind = spec.get("type")
        node: dict[str, Any] = {"id": step_id, **_rest(spec, "type", "input", "depends_on",
                                                          "max_retries")}
        if kind == "input":
            node.update(type="transform", config={"output": spec.get("input", {})})
        elif kind == "process":
            node.update(type="transform", config={"output": _process_output(spec, deps)})
        elif kind == "ai":
            node.update(type="ai", config=dict(spec.get("input") or {}))
        elif kind == "output":
            node.update(type="end", config={})
        else:
            node.update(type=kind, config=dict(spec.get("input") or {}))
        if "max_retries" in spec and isinstance(spec["max_retries"], int):
            node["retry"] = {"max_attempts": spec["max_retries"] + 1}
        nodes.append(node)
        edges += [{"source": dep, "target": step_id} for dep in deps]
    return {**_rest(doc, "steps"), "nodes": nodes, "edges": edges}


CONVERTERS: dict[str, Callable[[Document], Document]] = {
    "canonical": _from_to,
    "from-to": _from_to,
    "dag": _dag,
    "handlers": _handlers,
    "steps": _steps,
}
