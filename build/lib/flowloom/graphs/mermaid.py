"""The workflow's graph as Mermaid flowchart text, as users draw it (loops nested)."""

from __future__ import annotations

import re

from flowloom.graphs.nodetype import NodeTypes
from flowloom.graphs.spec import WorkflowSpec


def _mid(prefix: str, node_id: str) -> str:
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", f"{prefix}{node_id}")  # `end` is reserved


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def _lines(spec: WorkflowSpec, types: NodeTypes, prefix: str, indent: str) -> list[str]:
    lines: list[str] = []
    for node in spec.nodes:
        mid = _mid(prefix, node.id)
        kind = types.get(node.type)
        left, right = kind.shape if kind else ("[", "]")
        label = _label(f"{node.name or node.id}<br/><i>{node.type}</i>")
        lines.append(f'{indent}{mid}{left}"{label}"{right}')
        body = node.config.get("body") if kind and kind.expands else None
        if isinstance(body, dict):
            inner = WorkflowSpec.model_validate(body)
            lines.append(f'{indent}subgraph {mid}_body["{_label(node.id)} body"]')
            lines += _lines(inner, types, f"{prefix}{node.id}__", indent + "  ")
            lines.append(f"{indent}end")
            lines.append(f"{indent}{mid} -.-> {mid}_body")
    for edge in spec.edges:
        src, dst = _mid(prefix, edge.source), _mid(prefix, edge.target)
        if edge.branch:
            lines.append(f"{indent}{src} -->|{_label(edge.branch)}| {dst}")
        else:
            lines.append(f"{indent}{src} --> {dst}")
    return lines


def to_mermaid(spec: WorkflowSpec, node_types: NodeTypes) -> str:
    return "\n".join(["flowchart TD", *_lines(spec, node_types, "", "  ")]) + "\n"
