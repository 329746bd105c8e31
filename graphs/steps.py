"""The LangGraph node functions of a compiled workflow.

Every workflow node is one LangGraph node that routes with `Command(goto=...)` to all its
successors once it has settled (succeeded, failed or skipped). A successor triggered before
all its incoming edges have settled does nothing; the last predecessor to settle triggers it
again. So a join runs exactly once, right after its last taken branch, and a branch that
was not taken settles as `skipped` and passes the skip on instead of blocking the join.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphInterrupt
from langgraph.runtime import Runtime
from langgraph.types import Command

from flowloom.graphs.context import NodeContext, RunContext, Scope
from flowloom.graphs.execute import attempt_number, execute
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.nodetype import NodeTypes
from flowloom.graphs.plan import NodePlan, readiness
from flowloom.graphs.regions import Branch, Race
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


def own_limit(config: RunnableConfig) -> RunnableConfig:
    """A task's config for a subgraph compiled with a recursion limit of its own: the
    task's carries the limit of the graph running the task, which would replace the
    subgraph's, and a loop body's steps are not counted in it."""
    mine = RunnableConfig(**config)
    mine.pop("recursion_limit", None)
    return mine


def branch_start(state: FlowState) -> dict[str, Any]:
    """What a branch subgraph starts from: the parent's state, less its own bookkeeping."""
    return {key: value for key, value in state.items()
            if key in ("inputs", "run", "scope", "outputs", "nodes")}


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
        final = await self.compiled.ainvoke(branch_start(state), own_limit(config))
        outputs, metas = final.get("outputs") or {}, final.get("nodes") or {}
        return Command(update={"outputs": {n: outputs[n] for n in self.nodes if n in outputs},
                               "nodes": {n: metas[n] for n in self.nodes if n in metas}},
                       goto=self.leaving)


def _subgraph_config(config: RunnableConfig, name: str) -> RunnableConfig:
    """The config of one of several subgraphs a task runs: each keeps its checkpoints under
    its own namespace, so each resumes where it stopped."""
    configurable = dict(config.get("configurable") or {})
    parent = configurable.get("checkpoint_ns", "")
    configurable["checkpoint_ns"] = f"{parent}|{name}:0" if parent else f"{name}:0"
    return {**own_limit(config), "configurable": configurable}


class RaceStep:
    """Branches meeting at a join that fires on its first arrival, with everything after
    the join: one task, so the join's side runs while the slower branches go on. Each
    branch and the join's side is its own subgraph, checkpointed under its own namespace;
    the join's side starts as soon as the join can go ahead (or be skipped)."""

    def __init__(self, race: Race, join: NodePlan, parts: list[Any], tail: Any,
                 leaving: tuple[str, ...]) -> None:
        self.race = race
        self.join = join
        self.parts = parts
        self.tail = tail
        self.leaving = list(leaving)
        self.__name__ = f"step_{race.name}"

    async def __call__(self, state: FlowState, config: RunnableConfig) -> Command[Any]:
        start = branch_start(state)
        outputs, metas = dict(start.get("outputs") or {}), dict(start.get("nodes") or {})
        running: dict[asyncio.Task[Any], tuple[str, ...]] = {}
        paused: list[Any] = []

        def launch(name: str, graph: Any, nodes: tuple[str, ...], begin: Any) -> None:
            running[asyncio.ensure_future(
                graph.ainvoke(begin, _subgraph_config(config, name)))] = nodes

        tail = self.tail

        def start_tail_if_ready() -> None:
            nonlocal tail
            if tail is not None and readiness(self.join, metas)[0] != "wait":
                launch("tail", tail, self.race.tail,
                       {**start, "outputs": dict(outputs), "nodes": dict(metas)})
                tail = None

        for i, (part, nodes) in enumerate(zip(self.parts, self.race.parts, strict=True)):
            launch(f"branch{i}", part, nodes, start)
        try:
            start_tail_if_ready()  # an edge straight from the fork may have arrived
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    nodes = running.pop(task)
                    try:
                        final = task.result()
                    except GraphInterrupt as pause:  # the others go on until they pause
                        paused.extend(pause.args[0] if pause.args else ())
                        continue
                    got, settled = final.get("outputs") or {}, final.get("nodes") or {}
                    outputs.update((n, got[n]) for n in nodes if n in got)
                    metas.update((n, settled[n]) for n in nodes if n in settled)
                start_tail_if_ready()
        finally:  # a failure, or the run cancelled: nothing of the race goes on
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        if paused:
            raise GraphInterrupt(tuple(paused))
        own = self.race.nodes
        return Command(update={"outputs": {n: outputs[n] for n in own if n in outputs},
                               "nodes": {n: metas[n] for n in own if n in metas}},
                       goto=self.leaving)
