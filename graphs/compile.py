"""Workflow spec -> compiled LangGraph `StateGraph`. Pure: no I/O; persistence is handed in."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from flowloom.graphs.errors import CompileError
from flowloom.graphs.execute import retry_policy
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.loops import MAX_FOREACH_ITEMS, WAVE_MIN, Body, foreach_steps, while_steps
from flowloom.graphs.plan import NodePlan, plan_nodes
from flowloom.graphs.spec import WorkflowSpec
from flowloom.graphs.state import FlowState
from flowloom.graphs.steps import GraphScope, SimpleStep, Step
from flowloom.nodes.context import RunContext

Graph = CompiledStateGraph[Any, Any, Any, Any]


def recursion_limit(spec: WorkflowSpec) -> int:
    """Supersteps a run may take: each node settles in one or two steps, a waiting join
    adds none of its own, and each while pass takes two."""
    steps = 10
    for node in spec.nodes:
        steps += 3
        if node.type == "while":
            steps += 2 * int(node.config.get("max_iterations", 100)) + 2
        elif node.type == "foreach":
            steps += 2 * (MAX_FOREACH_ITEMS // WAVE_MIN + 1) + 2
    return steps


def _body(spec: WorkflowSpec, node: NodePlan, expressions: Expressions) -> Body:
    body_spec = WorkflowSpec.model_validate(node.config.body)
    graph = GraphScope(body_spec, expressions)
    if len(body_spec.nodes) == 1 and not body_spec.edges:
        only = plan_nodes(body_spec)[body_spec.nodes[0].id]
        if not only.kind.structural and only.node.type != "delay":
            return Body(graph, only, None)
    compiled = _build(body_spec, expressions, checkpointer=None)
    limit = recursion_limit(body_spec)
    return Body(graph, None, compiled.with_config(recursion_limit=limit))


def _build(spec: WorkflowSpec, expressions: Expressions,
           checkpointer: BaseCheckpointSaver[Any] | bool | None) -> Graph:
    graph = GraphScope(spec, expressions)
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(FlowState, context_schema=RunContext)
    for plan in plan_nodes(spec).values():
        steps: dict[str, Step]
        if plan.node.type == "foreach":
            body = _body(spec, plan, expressions)
            steps = foreach_steps(graph, plan, body, spec.settings.max_concurrency)
            retry_node = f"{plan.id}.items" if body.single else None
        elif plan.node.type == "while":
            body = _body(spec, plan, expressions)
            steps = while_steps(graph, plan, body)
            retry_node = f"{plan.id}.body" if body.single else None
        else:
            steps = {plan.id: SimpleStep(graph, plan)}
            retry_node = plan.id
        for name, step in steps.items():
            policy = None
            if name == retry_node:
                single = body.single if plan.kind.structural else plan
                policy = retry_policy(single) if single else None
            builder.add_node(name, step, retry_policy=policy)
        if not plan.in_edges:
            builder.add_edge(START, plan.id)
    return builder.compile(checkpointer=checkpointer, name=spec.id or "workflow")


def compile_workflow(
    spec: WorkflowSpec,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    *,
    expressions: Expressions | None = None,
) -> Graph:
    """A compiled LangGraph graph of `spec`. Invoke it with `context=RunContext(...)` and
    `{"inputs": ..., "run": {...}}` as input; its final state holds `outputs` and `nodes`."""
    if not spec.nodes:
        raise CompileError("a workflow needs at least one node")
    try:
        graph = _build(spec, expressions or Expressions(), checkpointer)
    except KeyError as exc:
        raise CompileError(f"unknown node type `{exc.args[0]}`; validate the document "
                           "with load_workflow() first") from None
    return graph.with_config(recursion_limit=recursion_limit(spec))
