"""Workflow documents of four common engine styles, turned into the canonical format.

Each converter takes the raw document and returns a canonical one (plain dicts); the
loader validates the result like any other document. Unknown keys are carried along.
What a converter cannot run here it marks on the node under `DIALECT_PROBLEM`
(`{"level", "message"}`); the loader reports it at validation, naming the node.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from flowloom.graphs.expressions import single_expression

Document = dict[str, Any]

DIALECT_PROBLEM = "dialect_problem"

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


def _as_list(value: Any) -> list[Any]:
    """A field that should hold a list, as one: anything else is none (and the validator
    names the field)."""
    return value if isinstance(value, list) else []


def _rest(d: dict[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in drop}


# --- canonical and dialect 4 -------------------------------------------------------

def _from_to(doc: Document) -> Document:
    out = dict(doc)
    if isinstance(doc.get("nodes"), list):
        upstream: dict[str, list[str]] = {}
        edges = doc.get("edges")
        for e in edges if isinstance(edges, list) else []:
            if isinstance(e, dict):
                source, target = e.get("from", e.get("source")), e.get("to", e.get("target"))
                upstream.setdefault(str(target), []).append(str(source))
        out["nodes"] = [
            {**n, "type": TYPE_ALIASES.get(str(n.get("type")), n.get("type"))}
            if isinstance(n, dict) else n
            for n in doc["nodes"]
        ]
        http_ids = {str(n.get("id")) for n in out["nodes"]
                    if isinstance(n, dict) and n.get("type") == "http"}
        builder = [isinstance(n, dict) and n.get("type") in TYPE_ALIASES for n in doc["nodes"]]
        out["nodes"] = [_from_to_config(n, [_value_of(u, http_ids) for u in
                                            upstream.get(str(n.get("id")), [])], aliased)
                        if isinstance(n, dict) else n
                        for n, aliased in zip(out["nodes"], builder, strict=True)]
    return out


def _value_of(node_id: str, http_ids: set[str]) -> str:
    """An upstream node's data as an expression: a data source's is its response body."""
    return f"outputs[{json.dumps(node_id)}]" + ('["body"]' if node_id in http_ids else "")


def _from_to_config(node: dict[str, Any], upstream: list[str], aliased: bool) -> Any:
    """A builder node's config in the canonical shape. The builder's own shapes of a
    `transformer` or a `data-source` apply only to those types: a canonical `transform`
    with `outptu` is a typo, refused by its config's schema."""
    if not isinstance(node.get("config"), dict):
        return node
    config = dict(node["config"])
    kind = node.get("type")
    extra: dict[str, Any] = {}
    if kind == "http" and aliased and "url" not in config and "endpoint" in config:
        # a data-source: `source_type` says what kind of endpoint; only its URL is used here
        extra["source_config"] = dict(config)
        config = {"url": config["endpoint"],
                  **_rest(config, "endpoint", "source_type")}
    if kind == "http" and "method" not in config:
        config["method"] = "POST" if "body" in config or "json" in config else "GET"
    if kind == "transform" and aliased and "output" not in config:
        if config.get("transform_type") == "map":
            return {**node, "config": {"output": _map_output(config, upstream)},
                    "source_config": config}
        config = {"output": config.get("template", config.get("value", config))}
    if kind == "condition" and "expression" not in config and "condition" in config:
        config["expression"] = config.pop("condition")
    if kind == "filter" and "items" not in config:
        if len(upstream) == 1:
            config["items"] = "{{ " + upstream[0] + " }}"
        else:
            extra[DIALECT_PROBLEM] = {"level": "error", "message": (
                f"a filter without `items` filters its upstream node's output; it has "
                f"{len(upstream)} upstream nodes")}
    if kind == "delay" and "seconds" not in config:
        for key in ("duration", "delay_seconds"):
            if key in config:
                config["seconds"] = config.pop(key)
                break
    return {**node, "config": config, **extra}


def _map_output(config: dict[str, Any], upstream: list[str]) -> str:
    """`mapping: {new_key: "dotted.path"}` picks fields of the upstream output, of each
    item when it is a list (the builder's `map` transformer)."""
    source = upstream[0] if len(upstream) == 1 else "inputs"
    return "{{ " + f"{source} | pick({jinja_literal(config.get('mapping') or {})})" + " }}"


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
        timed = [k for k in ("schedule_based", "event_based") if _mentions(data, k)]
        if timed:
            extra[DIALECT_PROBLEM] = {"level": "warning", "message": (
                f"{' and '.join(timed)} trigger settings are not run here: the node starts "
                f"the run with its inputs when the run is started (API, CLI or Python)")}
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


def _mentions(data: Any, word: str) -> bool:
    """`word` as a key or a string value anywhere in the trigger's data."""
    if isinstance(data, dict):
        return any(k == word or _mentions(v, word) for k, v in data.items())
    if isinstance(data, list):
        return any(_mentions(v, word) for v in data)
    return isinstance(data, str) and data == word


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


_CONCAT = "join('')"  # the seed joins the inputs' text


def _refused(base: dict[str, Any], config: dict[str, Any], why: str) -> dict[str, Any]:
    return {**base, "type": "transform", "config": {"output": None}, "source_config": config,
            DIALECT_PROBLEM: {"level": "error", "message": f"{why} is not supported here"}}


def _handler_node(node: dict[str, Any], http_ids: set[str],
                  text_ids: set[str]) -> dict[str, Any]:
    handler = node.get("handler")
    config = dict(node.get("config") or {})
    base = _rest(node, "handler", "config", "dependencies", "timeout_seconds")
    if "timeout_seconds" in node:
        base["timeout_s"] = node["timeout_seconds"]
    if handler in ("call_external_service", "http_request"):
        config.setdefault("method", "GET")
        if isinstance(config.get("body"), dict | list):  # the seed sends it as JSON
            config["json"] = config.pop("body")
        return {**base, "type": "http", "config": _rewrite_results(config, http_ids, text_ids)}
    if handler == "llm_service":
        return {**base, "type": "ai", "config": _rewrite_results(config, http_ids, text_ids)}
    if handler == "compute":
        op = _ARITHMETIC.get(str(config.get("operation")))
        if op is None:
            return _refused(base, config, f"compute operation {config.get('operation')!r}")
        a, b = (jinja_literal(_rewrite_results(config.get(k), http_ids, text_ids))
                for k in ("a", "b"))
        return {**base, "type": "transform",
                "config": {"output": {"result": "{{ " + f"{a} {op} {b}" + " }}"}},
                "source_config": config}
    if handler == "transform":
        flt = _TEXT_FILTERS.get(str(config.get("transform_type")))
        if flt is None:
            return _refused(base, config, f"transform_type {config.get('transform_type')!r}")
        value = jinja_literal(_rewrite_results(config.get("input"), http_ids, text_ids))
        return {**base, "type": "transform",
                "config": {"output": {"result": "{{ " + f"{value} | {flt}" + " }}"}},
                "source_config": config}
    if handler == "aggregate":
        kind = str(config.get("aggregate_type"))
        agg = _CONCAT if kind == "concat" else _AGGREGATES.get(kind)
        if agg is None:
            return _refused(base, config, f"aggregate_type {config.get('aggregate_type')!r}")
        values = jinja_literal(_rewrite_results(config.get("inputs", []), http_ids, text_ids))
        return {**base, "type": "transform",
                "config": {"output": {"result": "{{ " + f"{values} | {agg}" + " }}"}},
                "source_config": config}
    return {**base, "type": handler, "config": config}


def _rewrite_results(value: Any, http_ids: set[str], text_ids: set[str]) -> Any:
    """`{{ fetch.result }}` is an external service's response body here, and a model
    node's text itself (the seed keeps every handler's value under `result`)."""
    if isinstance(value, str):
        for ids, to in ((http_ids, r"\1.body"), (text_ids, r"\1")):
            if ids:
                pattern = r"\b(" + "|".join(map(re.escape, sorted(ids))) + r")\.result\b"
                value = re.sub(pattern, to, value)
        return value
    if isinstance(value, dict):
        return {k: _rewrite_results(v, http_ids, text_ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_results(v, http_ids, text_ids) for v in value]
    return value


def _handlers(doc: Document) -> Document:
    raw = [n for n in _as_list(doc.get("nodes")) if isinstance(n, dict)]
    http_ids = {str(n.get("id")) for n in raw
                if n.get("handler") in ("call_external_service", "http_request")}
    text_ids = {str(n.get("id")) for n in raw if n.get("handler") == "llm_service"}
    nodes = [_handler_node(n, http_ids, text_ids) for n in raw]
    edges = [{"source": dep, "target": n.get("id")}
             for n in raw for dep in _as_list(n.get("dependencies"))]
    return {**_rest(doc, "nodes"), "nodes": nodes, "edges": edges}


# --- dialect 3: {"steps": {...}} with `depends_on` ---------------------------------

def _apply_rule(expr: str, field: str, flt: str) -> str:
    """The rule on `field` of the value, or of its nested `data` (the seed's payloads)."""
    v, f = f"({expr})", json.dumps(field)
    data = f'{v}["data"]'
    top = f"dict({v}, **{{{f}: {v}[{f}] | {flt}}})"
    nested = f"dict({v}, data=dict({data}, **{{{f}: {data}[{f}] | {flt}}}))"
    has_data = f'{v} is mapping and "data" in {v} and {data} is mapping and {f} in {data}'
    return f"({top} if {v} is mapping and {f} in {v} else {nested} if {has_data} else {v})"


def _process_output(spec: dict[str, Any], deps: list[str]) -> tuple[Any, str | None]:
    """The transform's output, or None and why a rule cannot run here."""
    base = (f"outputs[{json.dumps(deps[0])}]" if len(deps) == 1
            else "{" + ", ".join(f"{json.dumps(d)}: outputs[{json.dumps(d)}]" for d in deps) + "}")
    expr = base
    for rule in (spec.get("input") or {}).get("rules", []):
        flt = _TEXT_FILTERS.get(str(rule.get("operation"))) if isinstance(rule, dict) else None
        if flt is None or not isinstance(rule.get("field"), str):
            return None, f"process rule {rule!r}"
        expr = _apply_rule(expr, rule["field"], flt)
    return "{{ " + expr + " }}", None


def _ai_step(spec: dict[str, Any], deps: list[str]) -> dict[str, Any]:
    """The seed merges the dependencies' results into the step's input, the prompt's
    context: here they follow the prompt, keyed by step id."""
    config = dict(spec.get("input") or {})
    if deps and isinstance(config.get("prompt"), str):
        context = ", ".join(f"{json.dumps(d)}: outputs[{json.dumps(d)}]" for d in deps)
        config["prompt"] += "\n\nContext: {{ {" + context + "} }}"
    return config


def _steps(doc: Document) -> Document:
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for step_id, spec in doc["steps"].items():
        spec = spec if isinstance(spec, dict) else {}
        deps = [d for d in _as_list(spec.get("depends_on")) if isinstance(d, str)]
        kind = spec.get("type")
        node: dict[str, Any] = {"id": step_id, **_rest(spec, "type", "input", "depends_on",
                                                          "max_retries")}
        if kind == "input":
            node.update(type="transform", config={"output": spec.get("input", {})})
        elif kind == "process":
            output, refused = _process_output(spec, deps)
            node.update(type="transform", config={"output": output})
            if refused:
                node[DIALECT_PROBLEM] = {"level": "error",
                                         "message": f"{refused} is not supported here"}
        elif kind == "ai":
            node.update(type="ai", config=_ai_step(spec, deps))
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
