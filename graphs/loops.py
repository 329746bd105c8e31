"""Steps of the loop types. A `foreach` fans its items out in chunks, each a subgraph
sending one task per item; a `while` loops through its body step and back. A body of one
simple node runs in the item step itself; a larger body is a compiled subgraph invoked
there, so LangGraph checkpoints it too."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, RetryPolicy, Send

from flowloom.graphs.context import NodeContext, RunContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.events import NodeStarted
from flowloom.graphs.execute import (
    NodeFailed,
    RetryableFailure,
    execute,
    output_error,
    retry_policy,
    settle_failure,
    state_error,
)
from flowloom.graphs.plan import NodePlan
from flowloom.graphs.state import FlowState, node_meta, workflow_output
from flowloom.graphs.steps import (
    GraphScope,
    Step,
    gate,
    make_scope,
    node_context,
    node_path,
    own_limit,
    settled,
)

MAX_FOREACH_ITEMS = 100_000
# Items per chunk: a chunk's items are one superstep of its subgraph, and LangGraph's
# bookkeeping per step grows with the square of its tasks.
WAVE_MIN = 512
WAVE_PER_SLOT = 8


@dataclass(frozen=True, slots=True)
class Body:
    graph: GraphScope
    single: NodePlan | None  # fast path: one node of a single-step type
    compiled: Any  # the body's compiled subgraph otherwise

    async def run(self, parent: FlowState, config: RunnableConfig, run: RunContext[Any],
                  outer: dict[str, Any], prefix: str, extra: dict[str, Any]) -> Any:
        state: FlowState = {
            "inputs": parent.get("inputs") or {},
            "run": parent.get("run") or {},
            "scope": {"outputs": outer, "extra": extra, "prefix": prefix},
        }
        if self.single is not None:
            ctx = node_context(self.graph, self.single, state, run, config, [])
            outcome = await execute(self.single, ctx)
            if self.graph.spec.output is None:  # the output rule picks the only node
                return outcome.output
            state["outputs"] = {self.single.id: outcome.output}
            state["nodes"] = {self.single.id: outcome.meta}
        else:
            state = await self.compiled.ainvoke(state, own_limit(config))
        return await workflow_output(self.graph.spec, state, self.graph.expressions,
                               self.graph.node_types,
                               outer=outer, extra=extra)


def _loop_error(plan: NodePlan, where: str, exc: NodeError) -> NodeError:
    return NodeError(f"{where} failed: {exc}", node_id=plan.id, kind=exc.kind)


def _outer_outputs(graph: GraphScope, state: FlowState) -> dict[str, Any]:
    return dict(make_scope(graph, state).outputs)


class ChunkState(TypedDict, total=False):
    chunk: dict[str, Any]  # `key` of its scope in RunContext.chunk_scopes, `start`, `items`
    done: Annotated[list[Any], operator.add]  # [node id, index, output, error] per item


def _chunk_graph(plan: NodePlan, run_one: Step, policy: RetryPolicy | None) -> Any:
    """A chunk of items as a subgraph: one `Send` per item, so each finished item is
    checkpointed (a crash never runs it again), while the chunk's state holds only its
    own items: the foreach's checkpoints sum to O(items), not O(items x chunks)."""

    def split(state: ChunkState) -> Command[Any]:
        chunk = state["chunk"]
        return Command(goto=[Send("item", {"key": chunk["key"], "index": chunk["start"] + i,
                                           "item": item})
                             for i, item in enumerate(chunk["items"])])

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(ChunkState,
                                                        context_schema=RunContext)
    builder.add_node("split", split, destinations=("item",))
    builder.add_node("item", run_one, retry_policy=policy)
    builder.add_edge(START, "split")
    return builder.compile(checkpointer=None, name=f"{plan.id}.chunk")


def foreach_steps(graph: GraphScope, plan: NodePlan, body: Body,
                  max_concurrency: int) -> dict[str, Step]:
    item_node, done_node = f"{plan.id}.items", f"{plan.id}.done"
    cfg = plan.config
    limit = min(cfg.max_concurrency, max_concurrency)
    size = max(WAVE_MIN, WAVE_PER_SLOT * limit)

    async def fan_out(state: FlowState, config: RunnableConfig,
                      runtime: Runtime[RunContext[Any]]) -> Command[Any] | None:
        if plan.id in (state.get("progress") or {}):
            return None  # fanned out already
        run = runtime.context
        taken = gate(plan, state, run)
        if not isinstance(taken, list):
            return taken
        ctx = node_context(graph, plan, state, run, config, taken)
        started = run.services.clock()
        event: NodeStarted = {"event": "node.started", "node_id": ctx.path, "attempt": 1,
                              "at": started}
        try:
            items = await ctx.evaluate(cfg.items, field="items")
            if not isinstance(items, list | tuple):
                raise NodeError(f"`items` must be a list, got {type(items).__name__}",
                                node_id=plan.id, field="items")
            if len(items) > MAX_FOREACH_ITEMS:
                raise NodeError(f"{len(items):,} items; a foreach takes at most "
                                f"{MAX_FOREACH_ITEMS:,}", node_id=plan.id, field="items")
        except NodeError as exc:
            run.emit(event)
            outcome = settle_failure(plan, ctx, exc, started)
            return settled(plan, outcome.output, outcome.meta)
        # Started once its items are known, so a viewer can show `started/total` at once.
        event["items_total"] = len(items)
        run.emit(event)
        base = {"inputs": state.get("inputs") or {}, "run": state.get("run") or {},
                "outer": dict(ctx.scope.outputs), "path": ctx.path}
        # Each item is written once, in its chunk's Send; progress stays a few numbers.
        sends = [Send(item_node, {**base, "start": i, "items": list(items[i:i + size])})
                 for i in range(0, len(items), size)]
        update = {"progress": {plan.id: {"count": len(items), "started_at": started}}}
        # An empty foreach still reaches its successors, through the collect step.
        return Command(update=update, goto=sends or done_node)

    async def run_one(payload: dict[str, Any], config: RunnableConfig,
                      runtime: Runtime[RunContext[Any]]) -> dict[str, Any]:
        run = runtime.context
        index = payload["index"]
        scope = run.chunk_scopes[payload["key"]]
        path = scope["path"]
        parent: FlowState = {"inputs": scope["inputs"], "run": scope["run"]}
        extra = {cfg.item_var: payload["item"], "index": index}
        async with run.semaphore(f"{run.execution_id}:{path}", limit):
            try:
                output = await body.run(parent, config, run, scope["outer"],
                                        f"{path}[{index}].", extra)
            except RetryableFailure:
                raise
            except NodeError as exc:
                error = _loop_error(plan, f"item {index}", exc)
                if plan.fails_run:
                    meta = node_meta("failed", [], error=error.as_dict())
                    run.emit({"event": "node.failed", "node_id": path,
                              "at": run.services.clock(), "error": error.as_dict(),
                              "meta": meta, "handled": False})
                    run.stopping = run.stopping or "[" not in path
                    raise NodeFailed(error, meta) from None
                return {"done": [[plan.id, index, None, error.as_dict()]]}
        return {"done": [[plan.id, index, output, None]]}

    chunks = _chunk_graph(plan, run_one,
                          retry_policy(body.single) if body.single is not None else None)

    async def run_chunk(payload: dict[str, Any], config: RunnableConfig,
                        runtime: Runtime[RunContext[Any]]) -> Command[Any]:
        run = runtime.context
        key = f"{payload['path']}@{payload['start']}"
        chunk = {"key": key, "start": payload["start"], "items": payload["items"]}
        # Two chunks at a time keep `limit` items busy without holding every item's task.
        async with run.semaphore(f"{run.execution_id}:{payload['path']}:chunks", 2):
            # The chunk's payload is checkpointed (a resumed chunk puts its scope back).
            run.chunk_scopes[key] = {k: payload[k] for k in ("inputs", "run", "outer", "path")}
            try:
                state = await chunks.ainvoke({"chunk": chunk}, config)
            finally:
                run.chunk_scopes.pop(key, None)
        return Command(update={"items": state.get("done") or []}, goto=done_node)

    async def collect(state: FlowState, config: RunnableConfig,
                      runtime: Runtime[RunContext[Any]]) -> Command[Any] | None:
        if plan.id in (state.get("nodes") or {}):
            return None
        run = runtime.context
        progress = (state.get("progress") or {})[plan.id]
        results = [r for r in state.get("items") or [] if r[0] == plan.id]
        results.sort(key=lambda r: r[1])
        ctx = node_context(graph, plan, state, run, config, [])
        failed = [r for r in results if r[3]]
        if failed:
            error = failed[0][3]
            exc = NodeError(error["message"], node_id=plan.id, kind=error["type"])
            outcome = settle_failure(plan, ctx, exc, progress["started_at"])
            return settled(plan, outcome.output, outcome.meta)
        output = [r[2] for r in results]
        # The list adds a level to its items, and is kept apart from them.
        too_deep = output_error(plan, output) or state_error(plan, run, output)
        if too_deep is not None:
            outcome = settle_failure(plan, ctx, too_deep, progress["started_at"])
            return settled(plan, outcome.output, outcome.meta)
        finished = run.services.clock()
        meta = node_meta("succeeded", [""], attempts=1, started_at=progress["started_at"],
                         finished_at=finished, items=len(output),
                         latency_ms=round((finished - progress["started_at"]) * 1000, 3))
        run.emit({"event": "node.succeeded", "node_id": ctx.path, "attempt": 1,
                  "at": finished, "output": output, "meta": meta})
        return settled(plan, output, meta)

    return {plan.id: fan_out, item_node: run_chunk, done_node: collect}


def while_steps(graph: GraphScope, plan: NodePlan, body: Body) -> dict[str, Step]:
    body_node = f"{plan.id}.body"
    cfg = plan.config

    async def check(state: FlowState, config: RunnableConfig,
                    runtime: Runtime[RunContext[Any]]) -> Command[Any] | None:
        run = runtime.context
        progress = (state.get("progress") or {}).get(plan.id)
        if plan.id in (state.get("nodes") or {}):
            return None
        if progress is None:
            arrived = gate(plan, state, run)
            if not isinstance(arrived, list):
                return arrived
            progress = {"iteration": 0, "last": None, "started_at": run.services.clock()}
            run.emit({"event": "node.started", "node_id": node_path(state, plan.id),
                      "attempt": 1, "at": progress["started_at"]})
        loop = {"iteration": progress["iteration"], "last": progress["last"]}
        ctx = node_context(graph, plan, state, run, config, [], loop=loop)
        try:
            go = bool(await ctx.evaluate(cfg.condition, field="condition"))
        except NodeError as exc:
            outcome = settle_failure(plan, ctx, exc, progress["started_at"])
            return settled(plan, outcome.output, outcome.meta)
        if go and progress["iteration"] < cfg.max_iterations:
            return Command(update={"progress": {plan.id: progress}}, goto=body_node)
        if go:
            ctx.log(f"stopped after max_iterations={cfg.max_iterations}", "warning")
        finished = run.services.clock()
        output = {"iterations": progress["iteration"], "last": progress["last"]}
        too_deep = output_error(plan, output)  # `last` sits a level down
        if too_deep is not None:
            outcome = settle_failure(plan, ctx, too_deep, progress["started_at"])
            return settled(plan, outcome.output, outcome.meta)
        meta = node_meta("succeeded", [""], attempts=1, started_at=progress["started_at"],
                         finished_at=finished,
                         latency_ms=round((finished - progress["started_at"]) * 1000, 3))
        run.emit({"event": "node.succeeded", "node_id": ctx.path, "attempt": 1,
                  "at": finished, "output": output, "meta": meta})
        return settled(plan, output, meta)

    def loop_context(state: FlowState, run: RunContext[Any],
                     config: RunnableConfig) -> NodeContext[Any]:
        # The loop is attempted once; a body of one node runs in this task (`Body.run`)
        # and has counted its own attempts under the task's key.
        ctx = node_context(graph, plan, state, run, config, [])
        ctx.attempt = 1
        return ctx

    async def run_body(state: FlowState, config: RunnableConfig,
                       runtime: Runtime[RunContext[Any]]) -> Command[Any]:
        run = runtime.context
        progress = (state.get("progress") or {})[plan.id]
        iteration = progress["iteration"]
        loop = {"iteration": iteration, "last": progress["last"]}
        path = node_path(state, plan.id)
        try:
            outer = _outer_outputs(graph, state)
            output = await body.run(state, config, run, outer, f"{path}[{iteration}].",
                                    {"loop": loop})
        except RetryableFailure:
            raise
        except NodeError as exc:
            ctx = loop_context(state, run, config)
            error = _loop_error(plan, f"pass {iteration}", exc)
            outcome = settle_failure(plan, ctx, error, progress["started_at"])
            return settled(plan, outcome.output, outcome.meta)
        too_deep = output_error(plan, output)  # a body's output rule can nest its nodes'
        if too_deep is not None:
            ctx = loop_context(state, run, config)
            error = _loop_error(plan, f"pass {iteration}", too_deep)
            outcome = settle_failure(plan, ctx, error, progress["started_at"])
            return settled(plan, outcome.output, outcome.meta)
        new = {**progress, "iteration": iteration + 1, "last": output}
        return Command(update={"progress": {plan.id: new}}, goto=plan.id)

    return {plan.id: check, body_node: run_body}


__all__ = ["Body", "foreach_steps", "while_steps"]
