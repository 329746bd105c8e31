"""The LangGraph node functions of a compiled workflow.

Every workflow node is one LangGraph node that routes with `Command(goto=...)` to all its
successors once it has settled (succeeded, failed or skipped). A successor triggered before
all its incoming edges have settled does nothing; the last predecessor to settle triggers it
again. So a join runs exactly once, right after its last taken branch, and a branch that
was not taken settles as `skipped` and passes the skip on instead of blocking the join.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import Command

from flowloom.graphs.context import NodeContext, RunContext, Scope
from flowloom.graphs.execute import attempt_number, execute
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.nodetype import NodeTypes
from flowloom.graphs.plan import NodePlan, readiness
from flowloom.graphs.regions import Branch
from flowloom.graphs.spec import WorkflowSpec
from flowloom.graphs.state import FlowState, node_meta, visible_outputs

Step = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class GraphScope:
    """What every step of one (sub)graph shares."""

    spec: WorkflowSpec
    expressions: Expressions
    node_types: NodeTypes


def task_key(config: RunnableConfig) -> str:
    return str((config.get("metadata") or {}).get("langgraph_checkpoint_ns", ""))


def node_path(state: FlowState, node_id: str) -> str:
    return f"{(state.get('scope') or {}).get('prefix', '')}{node_id}"


def make_scope(graph: GraphScope, state: FlowState, **extra: Any) -> Scope:
    scope = state.get("scope") or {}
    names = dict(scope.get("extra") or {})
    names.update(extra)
    return Scope(
        inputs=state.get("inputs") or {},
        outputs=visible_outputs(graph.spec, state, scope.get("outputs")),
        run=state.get("run") or {},
        extra=names,
    )


def node_context(
    graph: GraphScope, plan: NodePlan, state: FlowState, run: RunContext[Any],
    config: RunnableConfig, taken: list[str], *, path: str | None = None, **extra: Any,
) -> NodeContext[Any]:
    scope = make_scope(graph, state, **extra)
    first = ((state.get("progress") or {}).get(plan.id) or {}).get("first_started_at")
    return NodeContext(
        node_id=plan.id,
        path=path or node_path(state, plan.id),
        scope=scope,
        expressions=graph.expressions,
        run=run,
        attempt=attempt_number(run, task_key(config)),
        first_started_at=first or run.services.clock(),
        upstream={source: scope.outputs.get(source) for source in taken},
    )


def skip(plan: NodePlan, state: FlowState, run: RunContext[Any]) -> Command[Any]:
    run.emit({"event": "node.skipped", "node_id": node_path(state, plan.id),
              "at": run.services.clock()})
    return Command(update={"nodes": {plan.id: node_meta("skipped", [])}},
                   goto=list(plan.targets))


def gate(plan: NodePlan, state: FlowState, run: RunContext[Any]) -> Command[Any] | list[str] | None:
    """Whether a triggered node goes ahead: None when not this time (it settled already, or
    an incoming edge is still open), the skip when no taken edge reached it, else the
    sources whose edges were taken."""
    metas = state.get("nodes") or {}
    if plan.id in metas:
        return None
    verdict, taken = readiness(plan, metas)
    if verdict == "wait":
        return None
    if verdict == "skip":
        return skip(plan, state, run)
    return taken


def settled(plan: NodePlan, output: Any, meta: dict[str, Any]) -> Command[Any]:
    # The state keeps only what routing needs; timings and attempts travel in events
    # to the run record, so every checkpoint stays small.
    status = {"status": meta["status"], "ports": meta["ports"]}
    return Command(update={"outputs": {plan.id: output}, "nodes": {plan.id: status}},
                   goto=list(plan.targets))


class SimpleStep:
    """A node that runs in one step: every type but the loops.

    A class rather than a closure: LangGraph disassembles closures at compile time to look
    for subgraphs, which cost a millisecond a node on large workflows.
    """

    def __init__(self, graph: GraphScope, plan: NodePlan) -> None:
        self.graph = graph
        self.plan = plan
        self.durable_start = plan.kind.durable_start
        self.__name__ = f"step_{plan.id}"

    async def __call__(self, state: FlowState, config: RunnableConfig,
                       runtime: Runtime[RunContext[Any]]) -> Command[Any] | None:
        plan, run = self.plan, runtime.context
        taken = gate(plan, state, run)
        if not isinstance(taken, list):
            return taken
        progress = (state.get("progress") or {}).get(plan.id)
        if self.durable_start and progress is None:
            # Checkpoint the start before waiting, so a resumed delay waits only the rest.
            return Command(update={"progress": {plan.id: {
                "first_started_at": run.services.clock()}}}, goto=plan.id)
        ctx = node_context(self.graph, plan, state, run, config, taken)
        outcome = await execute(plan, ctx)
        return settled(plan, outcome.output, outcome.meta)


class BranchStep:
    """A branch compiled into its own subgraph: one task of its parent, so its nodes
    advance at their own pace, each step checkpointed under the task's namespace. When it
    ends, its nodes' outputs and states join the parent's, and the nodes after it run."""

    def __init__(self, branch: Branch, compiled: Any, leaving: tuple[str, ...]) -> None:
        self.nodes = branch.nodes
        self.compiled = compiled
        self.leaving = list(leaving)
        self.__name__ = f"step_{branch.name}"

    async def __call__(self, state: FlowState, config: RunnableConfig) -> Command[Any]:
        start = {key: value for key, value in state.items()
                 if key in ("inputs", "run", "scope", "outputs", "nodes")}
        final = await self.compiled.ainvoke(start, config)
        outputs, metas = final.get("outputs") or {}, final.get("nodes") or {}
        return Command(update={"outputs": {n: outputs[n] for n in self.nodes if n in outputs},
                               "nodes": {n: metas[n] for n in self.nodes if n in metas}},
                       goto=self.leaving)
