"""Workflow spec -> compiled LangGraph `StateGraph`. Pure: no I/O; persistence is handed in."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from flowloom.graphs.context import RunContext
from flowloom.graphs.errors import CompileError
from flowloom.graphs.execute import retry_policy
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.loops import MAX_FOREACH_ITEMS, WAVE_MIN, Body, foreach_steps, while_steps
from flowloom.graphs.nodetype import NodeTypes
from flowloom.graphs.plan import NodePlan, plan_nodes
from flowloom.graphs.spec import WorkflowSpec
from flowloom.graphs.state import FlowState
from flowloom.graphs.steps import GraphScope, SimpleStep, Step

Graph = CompiledStateGraph[Any, Any, Any, Any]


def recursion_limit(spec: WorkflowSpec, node_types: NodeTypes) -> int:
    """Supersteps a run may take: each node settles in one or two steps, a waiting join
    adds none of its own, and each while pass takes two."""
    steps = 10
    for node in spec.nodes:
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


def _build(graph: GraphScope, checkpointer: BaseCheckpointSaver[Any] | bool | None) -> Graph:
    spec = graph.spec
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(FlowState, context_schema=RunContext)
    for plan in plan_nodes(spec, graph.node_types).values():
        steps: dict[str, Step]
        retry_plan: NodePlan | None = plan
        if plan.kind.expands == "fan_out":
            body = _body(plan, graph)
            steps = foreach_steps(graph, plan, body, spec.settings.max_concurrency)
            retry_node, retry_plan = f"{plan.id}.items", body.single
        elif plan.kind.expands == "repeat":
            body = _body(plan, graph)
            steps = while_steps(graph, plan, body)
            retry_node, retry_plan = f"{plan.id}.body", body.single
        else:
            steps = {plan.id: SimpleStep(graph, plan)}
            retry_node = plan.id
        for name, step in steps.items():
            policy = retry_policy(retry_plan) if name == retry_node and retry_plan else None
            builder.add_node(name, step, retry_policy=policy)
        if not plan.in_edges:
            builder.add_edge(START, plan.id)
    return builder.compile(checkpointer=checkpointer, name=spec.id or "workflow")


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
