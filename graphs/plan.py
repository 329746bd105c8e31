"""What the compiler knows about one node before it builds its steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowloom.graphs.errors import CompileError
from flowloom.graphs.nodetype import NodeType, NodeTypes
from flowloom.graphs.spec import EdgeSpec, NodeSpec, WorkflowSpec


@dataclass(frozen=True, slots=True)
class NodePlan:
    node: NodeSpec
    kind: NodeType
    config: Any  # the node type's validated Config
    in_edges: tuple[tuple[str, str], ...]  # (source id, port)
    targets: tuple[str, ...]  # every successor, taken or not: skips must propagate
    has_error_edge: bool

    @property
    def id(self) -> str:
        return self.node.id

    @property
    def join_any(self) -> bool:
        return self.kind.join_any(self.config)

    @property
    def fails_run(self) -> bool:
        """Whether a final failure of this node fails the whole run."""
        return not self.has_error_edge and self.node.on_error == "fail"


def plan_nodes(spec: WorkflowSpec, node_types: NodeTypes) -> dict[str, NodePlan]:
    plans: dict[str, NodePlan] = {}
    incoming: dict[str, list[EdgeSpec]] = {}
    leaving: dict[str, list[EdgeSpec]] = {}
    for edge in spec.edges:
        incoming.setdefault(edge.target, []).append(edge)
        leaving.setdefault(edge.source, []).append(edge)
    for node in spec.nodes:
        kind = node_types.get(node.type)
        if kind is None:  # load_workflow() refuses these; a hand-built spec may not
            raise CompileError(f"unknown node type `{node.type}` (node `{node.id}`); "
                               "validate the document with load_workflow() first")
        in_edges = tuple((e.source, e.port) for e in incoming.get(node.id, []))
        outgoing = leaving.get(node.id, [])
        plans[node.id] = NodePlan(
            node=node,
            kind=kind,
            config=kind.Config.model_validate(node.config),
            in_edges=in_edges,
            targets=tuple(dict.fromkeys(e.target for e in outgoing)),
            has_error_edge=any(e.port == "error" for e in outgoing),
        )
    return plans


def readiness(plan: NodePlan, metas: dict[str, Any]) -> tuple[str, list[str]]:
    """`wait`, `skip` or `run`, and the sources whose edges were taken."""
    taken: list[str] = []
    pending = False
    for source, port in plan.in_edges:
        meta = metas.get(source)
        if meta is None:
            pending = True
        elif port in meta["ports"]:
            taken.append(source)
    if plan.join_any and taken:
        return "run", taken
    if pending:
        return "wait", taken
    if plan.in_edges and not taken:
        return "skip", taken
    return "run", taken
