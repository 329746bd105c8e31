"""Running one node attempt: timeout, events, and what a failure means for the run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from langgraph.errors import GraphBubbleUp, GraphInterrupt
from langgraph.types import RetryPolicy

from flowloom.graphs.budget import text_size
from flowloom.graphs.context import NodeContext, RunContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.events import NodeStarted
from flowloom.graphs.limits import ValueTooLarge, check_value_shape
from flowloom.graphs.plan import NodePlan
from flowloom.graphs.redact import cap_fields, redact
from flowloom.graphs.state import node_meta


class RetryableFailure(NodeError):
    """Raised to let LangGraph's RetryPolicy run another attempt."""


class NodeFailed(NodeError):
    """A node failed for good and its policy fails the run."""

    def __init__(self, error: NodeError, meta: dict[str, Any]) -> None:
        super().__init__(error.message, node_id=error.node_id, field=error.field,
                         kind=error.kind)
        self.meta = meta


def retry_policy(plan: NodePlan) -> RetryPolicy:
    retry = plan.node.retry
    return RetryPolicy(
        initial_interval=retry.initial_delay_s,
        backoff_factor=retry.backoff,
        max_interval=retry.max_delay_s,
        max_attempts=retry.max_attempts,
        jitter=retry.jitter,
        retry_on=lambda exc: isinstance(exc, RetryableFailure),
    )


def backoff_s(plan: NodePlan, attempt: int) -> float:
    """The delay LangGraph's RetryPolicy waits after failed attempt number `attempt`."""
    retry = plan.node.retry
    return min(retry.max_delay_s, retry.initial_delay_s * retry.backoff ** (attempt - 1))


async def honour_retry_after(plan: NodePlan, attempt: int, error: NodeError) -> None:
    """Wait out the part of a server's Retry-After (capped at max_delay_s) that the
    policy's own backoff will not cover."""
    if error.retry_after_s:
        wanted = min(error.retry_after_s, plan.node.retry.max_delay_s)
        extra = wanted - backoff_s(plan, attempt)
        if extra > 0:
            await asyncio.sleep(extra)


def as_node_error(exc: BaseException, plan: NodePlan) -> NodeError:
    if isinstance(exc, NodeError):
        exc.node_id = exc.node_id or plan.id
        return exc
    if isinstance(exc, TimeoutError):
        return NodeError(f"timed out after {plan.node.timeout_s:g}s", node_id=plan.id,
                         kind="TimeoutError", retriable=True)
    return NodeError(f"{type(exc).__name__}: {exc}", node_id=plan.id, kind=type(exc).__name__)


def output_error(plan: NodePlan, output: Any) -> NodeError | None:
    """The error of an output too deep to store and read back, if it is."""
    try:
        check_value_shape(output, what="output")
    except ValueTooLarge as exc:
        return NodeError(str(exc), node_id=plan.id, kind="LimitExceeded")
    return None


_PLAIN = frozenset({float, bool, type(None)})


def state_error(plan: NodePlan, run: RunContext[Any], output: Any) -> NodeError | None:
    """The error of an output that would take the run's state past its cap; else the
    output is counted in it."""
    if run.max_state_bytes is None:
        return None
    left = run.max_state_bytes - run.state_bytes
    kind = type(output)  # most outputs are scalars: sized without a walk
    size = (len(output) + 2 if kind is str else output.bit_length() * 31 // 100 + 2
            if kind is int else 24 if kind in _PLAIN else text_size(output, left, timed=False))
    if size > left:
        return NodeError(
            f"its output ({size:,} bytes or more) would take the run's state past "
            f"{run.max_state_bytes:,} bytes, the limit (FLOWLOOM_MAX_RUN_STATE_BYTES) on "
            f"all outputs of a run", node_id=plan.id, kind="LimitExceeded")
    run.state_bytes += size
    return None


def keep_rendered(plan: NodePlan, ctx: NodeContext[Any]) -> None:
    """Put what the node rendered into its meta, redacted and capped: the record and the
    events show the config as it was for the run, never its credentials."""
    if ctx.rendered:
        kind = plan.kind
        ctx.meta["config"] = cap_fields(redact(
            ctx.rendered, secret_names=kind.secret_names(plan.config),
            masked=kind.masked_fields))


def error_output(error: NodeError) -> dict[str, Any]:
    return {"error": {"type": error.kind, "message": str(error)}}


@dataclass(slots=True)
class Outcome:
    output: Any
    meta: dict[str, Any]


def attempt_number(run: RunContext[Any], task_key: str) -> int:
    run.attempts[task_key] = attempt = run.attempts.get(task_key, 0) + 1
    return attempt


async def execute(plan: NodePlan, ctx: NodeContext[Any]) -> Outcome:
    """One attempt of a single-step node. Raises RetryableFailure or NodeFailed."""
    if not plan.kind.waits:  # computes at once: no slot to wait for, nothing to cut short
        return await _attempt(plan, ctx)
    async with ctx.run.slot():
        if ctx.run.stopping:
            # Another node failed the run while this one waited for its turn: start
            # nothing; LangGraph is about to cancel this task with the others.
            await asyncio.Future()
        if ctx.run.guard is not None:  # the runner's check that the run is still ours
            await ctx.run.guard()
        return await _attempt(plan, ctx)


async def _attempt(plan: NodePlan, ctx: NodeContext[Any]) -> Outcome:
    run = ctx.run
    clock = ctx.services.clock
    started = clock()
    if plan.kind.side_effects:  # shown with the node, so a user can trace the call
        ctx.meta["idempotency_key"] = ctx.idempotency_key
    event: NodeStarted = {"event": "node.started", "node_id": ctx.path,
                          "attempt": ctx.attempt, "at": started}
    if plan.kind.durable_start:  # what its wait counts from, kept across resumes
        event["first_started_at"] = ctx.first_started_at
    run.emit(event)
    try:
        if plan.kind.waits:
            async with asyncio.timeout(plan.node.timeout_s):
                output = await plan.kind.run(plan.config, ctx)
        else:
            output = await plan.kind.run(plan.config, ctx)
    except asyncio.CancelledError:
        run.emit({"event": "node.cancelled", "node_id": ctx.path, "at": clock()})
        raise
    except GraphInterrupt as pause:  # an approval: the run waits, the node is not failed
        run.emit({"event": "node.waiting", "node_id": ctx.path, "at": clock(),
                  "request": pause.args[0][0].value if pause.args and pause.args[0] else None})
        raise
    except GraphBubbleUp:
        raise
    except Exception as exc:
        error = as_node_error(exc, plan)
        if error.retriable and ctx.attempt < plan.node.retry.max_attempts:
            await honour_retry_after(plan, ctx.attempt, error)
        return settle_failure(plan, ctx, error, started)
    refused = output_error(plan, output) or state_error(plan, run, output)
    if refused is not None:
        return settle_failure(plan, ctx, refused, started)
    finished = clock()
    keep_rendered(plan, ctx)
    meta = node_meta("succeeded", plan.kind.route(plan.config, output), attempts=ctx.attempt,
                     started_at=started, finished_at=finished,
                     latency_ms=round((finished - started) * 1000, 3), **ctx.meta)
    run.emit({"event": "node.succeeded", "node_id": ctx.path, "attempt": ctx.attempt,
              "at": finished, "output": output, "meta": meta})
    return Outcome(output, meta)


def settle_failure(
    plan: NodePlan, ctx: NodeContext[Any], error: NodeError, started: float
) -> Outcome:
    """Retry, route `error`, continue, or fail the run, as the node's policy says."""
    clock = ctx.services.clock
    if error.retriable and ctx.attempt < plan.node.retry.max_attempts:
        ctx.run.emit({"event": "node.retrying", "node_id": ctx.path, "attempt": ctx.attempt,
                      "at": clock(), "reason": str(error),
                      "delay_s": max(backoff_s(plan, ctx.attempt),
                                     min(error.retry_after_s or 0, plan.node.retry.max_delay_s))})
        raise RetryableFailure(error.message, node_id=plan.id, kind=error.kind,
                               retriable=True, retry_after_s=error.retry_after_s)
    finished = clock()
    keep_rendered(plan, ctx)
    ports = ["error"] if plan.has_error_edge else [""]
    meta = node_meta("failed", ports, attempts=ctx.attempt, started_at=started,
                     finished_at=finished, latency_ms=round((finished - started) * 1000, 3),
                     error=error.as_dict(), **ctx.meta)
    ctx.run.emit({"event": "node.failed", "node_id": ctx.path, "attempt": ctx.attempt,
                  "at": finished, "error": error.as_dict(), "meta": meta,
                  "handled": not plan.fails_run})
    if plan.fails_run:
        # Outside loops nothing catches it: the run fails. (A loop may take over an
        # item's failure, so inside one it is the loop that decides.)
        ctx.run.stopping = ctx.run.stopping or "[" not in ctx.path
        raise NodeFailed(error, meta)
    return Outcome(error_output(error), meta)
