"""Workflow spec -> compiled LangGraph `StateGraph`. Pure: no I/O; persistence is handed in."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from flowloom.graphs.context import RunContext
from flowloom.graphs.errors import CompileError
from flowloom.graphs.execute import retry_policy
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.loops import MAX_FOREACH_ITEMS, WAVE_MIN, Body, foreach_steps, while_steps
from flowloom.graphs.nodetype import NodeType, NodeTypes
from flowloom.graphs.plan import NodePlan, plan_nodes
from flowloom.graphs.regions import Race, find_branches
from flowloom.graphs.spec import WorkflowSpec
from flowloom.graphs.state import FlowState
from flowloom.graphs.steps import BranchStep, GraphScope, RaceStep, SimpleStep, Step

Graph = CompiledStateGraph[Any, Any, Any, Any]


def recursion_limit(spec: WorkflowSpec, node_types: NodeTypes,
                    only: Collection[str] | None = None) -> int:
    """Supersteps a run may take: each node settles in one or two steps, a waiting join
    adds none of its own, and each while pass takes two."""
    steps = 10
    for node in spec.nodes:
        if only is not None and node.id not in only:
            continue
        steps += 3
        kind = node_types[node.type]
        if kind.expands == "repeat":
            steps += 2 * kind.max_passes(kind.Config.model_validate(node.config)) + 2
        elif kind.expands == "fan_out":
            steps += 2 * (MAX_FOREACH_ITEMS // WAVE_MIN + 1) + 2
    return steps


def _body(node: NodePlan, scope: GraphScope) -> Body:
    body_spec = WorkflowSpec.model_validate(node.config.body)
    graph = GraphScope(body_spec, scope.expressions, scope.node_types)
    if len(body_spec.nodes) == 1 and not body_spec.edges:
        only = plan_nodes(body_spec, scope.node_types)[body_spec.nodes[0].id]
        if not only.kind.expands and not only.kind.durable_start:
            return Body(graph, only, None)
    compiled = _build(graph, checkpointer=None)
    limit = recursion_limit(body_spec, scope.node_types)
    return Body(graph, None, compiled.with_config(recursion_limit=limit))


def _steps(graph: GraphScope, plan: NodePlan) -> tuple[dict[str, Step], str, NodePlan | None]:
    """The LangGraph nodes of one workflow node, the one that retries, and its plan."""
    if plan.kind.expands == "fan_out":
        body = _body(plan, graph)
        steps = foreach_steps(graph, plan, body, graph.spec.settings.max_concurrency)
        return steps, f"{plan.id}.items", body.single
    if plan.kind.expands == "repeat":
        body = _body(plan, graph)
        return while_steps(graph, plan, body), f"{plan.id}.body", body.single
    return {plan.id: SimpleStep(graph, plan)}, plan.id, plan


def _holds(kind: NodeType) -> bool:
    return bool(kind.waits or kind.pauses or kind.expands or kind.durable_start)


def _routes(plan: NodePlan, steps: Mapping[str, Step],
            labels: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Where each step may route with `Command`, labelled with the workflow's branch names,
    so `get_graph()` and its Mermaid drawing show the workflow's edges."""
    after = {target: labels.get(target, "") for target in plan.targets}
    if plan.kind.expands == "fan_out":
        items, done = f"{plan.id}.items", f"{plan.id}.done"
        return {plan.id: {items: "each item", done: "", **after}, items: {done: ""},
                done: after}
    if plan.kind.expands == "repeat":
        body = f"{plan.id}.body"
        return {plan.id: {body: "again", **after}, body: {plan.id: ""}}
    return {name: after for name in steps}


def _build(graph: GraphScope, checkpointer: BaseCheckpointSaver[Any] | bool | None,
           only: tuple[str, ...] | None = None) -> Graph:
    """The graph of the workflow, or of the branch made of the nodes `only`. Branches that
    can run apart become subgraphs (see `graphs.regions`), split again inside."""
    spec = graph.spec
    all_plans = plan_nodes(spec, graph.node_types)
    ids = only if only is not None else tuple(all_plans)
    inside = set(ids)
    edges = [(source, plan.id) for plan in all_plans.values() for source, _ in plan.in_edges]
    branches = find_branches(
        ids, edges, fires_early=lambda node: all_plans[node].join_any,
        must_split=lambda node: bool(all_plans[node].kind.expands
                                     or all_plans[node].kind.durable_start),
        holds=lambda node: _holds(all_plans[node].kind))
    owner = {node: branch.name for branch in branches for node in branch.nodes}

    def step_names(targets: Iterable[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(owner.get(t, t) for t in targets if t in inside))

    labels: dict[str, dict[str, str]] = {}  # node -> step it routes to -> edge branch names
    for plan in all_plans.values():
        for source, port in plan.in_edges:
            if source in inside and plan.id in inside and owner.get(source) != owner.get(
                    plan.id, plan.id):
                names = labels.setdefault(source, {})
                to = owner.get(plan.id, plan.id)
                names[to] = "/".join(filter(None, (names.get(to), port)))

    def subgraph(nodes: tuple[str, ...]) -> Any:
        limit = recursion_limit(spec, graph.node_types, nodes)
        return _build(graph, checkpointer=None, only=nodes).with_config(recursion_limit=limit)

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(FlowState, context_schema=RunContext)
    nested: dict[str, Any] = {}  # step -> the graph `get_graph(xray=True)` draws inside it
    for branch in branches:
        leaving = step_names(t for n in branch.nodes for t in all_plans[n].targets
                             if owner.get(t) != branch.name)
        apart: BranchStep | RaceStep
        if isinstance(branch, Race):
            parts = [subgraph(part) for part in branch.parts]
            apart = RaceStep(branch, all_plans[branch.join], parts, subgraph(branch.tail),
                             leaving)
            nested[branch.name] = _race_drawing(branch, parts, apart.tail)
        else:
            apart = BranchStep(branch, subgraph(branch.nodes), leaving)
            nested[branch.name] = apart.compiled
        builder.add_node(branch.name, apart, destinations=leaving)
    for node_id in ids:
        if node_id in owner:
            continue
        plan = replace(all_plans[node_id], targets=step_names(all_plans[node_id].targets))
        steps, retry_node, retry_plan = _steps(graph, plan)
        routes = _routes(plan, steps, labels.get(node_id, {}))
        for name, step in steps.items():
            policy = retry_policy(retry_plan) if name == retry_node and retry_plan else None
            route = routes[name]
            builder.add_node(name, step, retry_policy=policy,
                             destinations=route if any(route.values()) else tuple(route))
    entries = step_names(n for n in ids
                         if not any(s in inside for s, _ in all_plans[n].in_edges))
    for entry in entries:
        builder.add_edge(START, entry)
    compiled = builder.compile(checkpointer=checkpointer, name=spec.id or "workflow")
    for name, drawn in nested.items():
        compiled.nodes[name].subgraphs = [drawn]
    return compiled


def _race_drawing(race: Race, parts: list[Any], tail: Any) -> Graph:
    """What a race looks like: its branches, each a subgraph, into the join's side. Only
    drawn (`get_graph(xray=True)`); the race step runs the same subgraphs itself."""
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(FlowState)
    for nodes, part in zip(race.parts, parts, strict=True):
        builder.add_node(f"{nodes[0]}.branch", part)
        builder.add_edge(START, f"{nodes[0]}.branch")
        builder.add_edge(f"{nodes[0]}.branch", f"{race.join}.side")
    builder.add_node(f"{race.join}.side", tail)
    return builder.compile(name=race.name)


def compile_workflow(
    spec: WorkflowSpec,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    *,
    node_types: NodeTypes,
    expressions: Expressions | None = None,
) -> Graph:
    """A compiled LangGraph graph of `spec`. Invoke it with `context=RunContext(...)` and
    `{"inputs": ..., "run": {...}}` as input; its final state holds `outputs` and `nodes`."""
    if not spec.nodes:
        raise CompileError("a workflow needs at least one node")
    unknown = sorted({n.type for n in spec.nodes} - node_types.keys())
    if unknown:
        raise CompileError(f"unknown node type `{unknown[0]}`; validate the document "
                           "with load_workflow() first")
    graph = _build(GraphScope(spec, expressions or Expressions(), node_types), checkpointer)
    return graph.with_config(recursion_limit=recursion_limit(spec, node_types))
