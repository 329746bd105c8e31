"""The LangGraph state of a compiled workflow, and the rule that picks a run's output."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, TypedDict

from flowloom.graphs.budget import LimitExceeded
from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.expressions import Expressions, namespace
from flowloom.graphs.nodetype import NodeTypes
from flowloom.graphs.offload import evaluate_budgeted
from flowloom.graphs.spec import WorkflowSpec

RAN = frozenset({"succeeded", "failed"})


WORKFLOW_OUTPUT = "the workflow's `output`"


def merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    if not left:
        return dict(right or {})
    if not right:
        return left
    return {**left, **right}


class FlowState(TypedDict, total=False):
    inputs: dict[str, Any]
    run: dict[str, Any]  # id, workflow_id, started_at
    scope: dict[str, Any]  # in a loop body: outer `outputs`, `extra` names, node path `prefix`
    outputs: Annotated[dict[str, Any], merge]  # node id -> output
    nodes: Annotated[dict[str, Any], merge]  # node id -> status, ports, attempts, timings, error
    progress: Annotated[dict[str, Any], merge]  # durable per-node progress (loops, delays)
    items: Annotated[list[Any], operator.add]  # foreach results: [node id, index, output, error]


def node_meta(status: str, ports: list[str], **extra: Any) -> dict[str, Any]:
    return {"status": status, "ports": ports, **extra}


def visible_outputs(
    spec: WorkflowSpec, state: Mapping[str, Any], outer: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`outputs` as expressions see it: every node id present (null until it runs), the
    body's own ids shadowing the enclosing workflow's."""
    own = state.get("outputs") or {}
    unset = spec.unset_outputs
    if own.keys() <= unset.keys():  # always so: merged whole, at C speed, on every step
        return {**outer, **unset, **own} if outer else {**unset, **own}
    base = dict(outer) if outer else {}
    for node in spec.nodes:
        base[node.id] = own.get(node.id)
    return base


async def workflow_output(
    spec: WorkflowSpec,
    state: Mapping[str, Any],
    expressions: Expressions,
    node_types: NodeTypes,
    *,
    outer: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Any:
    """The output rule of workflow-format.md: the `output` template; else the one `end`
    node that ran; else the one sink that ran; else `{sink_id: output}` of sinks that ran."""
    outputs = visible_outputs(spec, state, outer)
    if spec.output is not None:
        ns = namespace(inputs=state.get("inputs") or {}, outputs=outputs,
                       run=state.get("run") or {}, extra=extra)
        budget = expressions.budget(start=False)
        try:
            return await evaluate_budgeted(budget, lambda: expressions.render(
                spec.output, ns, field="output", budget=budget))
        except LimitExceeded as exc:  # timed out waiting for, or in, a worker thread
            error = ExpressionError(f"limit exceeded: {exc}", field="output",
                                    kind="LimitExceeded")
            error.where = WORKFLOW_OUTPUT
            raise error from None
        except ExpressionError as error:
            error.where = WORKFLOW_OUTPUT  # not a node's: "node, field `output`" misleads
            raise
    metas = state.get("nodes") or {}
    ran = {n.id for n in spec.nodes if (metas.get(n.id) or {}).get("status") in RAN}
    ends = [n.id for n in spec.nodes
            if n.id in ran and getattr(node_types.get(n.type), "exit", False)]
    if len(ends) == 1:
        return outputs[ends[0]]
    sources = {e.source for e in spec.edges}
    sinks = [n.id for n in spec.nodes if n.id not in sources and n.id in ran]
    if len(sinks) == 1:
        return outputs[sinks[0]]
    return {s: outputs[s] for s in sinks}
