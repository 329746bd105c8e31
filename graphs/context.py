"""The runtime context a compiled graph runs in: per run, and per node execution.

The compiler needs only a clock and a sleep of the services; the services a node type
uses (HTTP, models, cache) are its own business and arrive through the same object.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from flowloom.graphs.budget import MAX_RUN_RENDER_SECONDS, Budget, LeaveTheLoop, LimitExceeded
from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.events import RunEvent
from flowloom.graphs.expressions import Expressions, has_template, namespace
from flowloom.graphs.limits import MAX_RUN_STATE_BYTES
from flowloom.graphs.offload import off_the_loop, on_the_loop


class RuntimeServices(Protocol):
    """What the compiler itself uses of a run's services."""

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def sleep(self) -> Callable[[float], Awaitable[Any]]: ...


@dataclass(frozen=True, slots=True)
class BasicServices:
    """Services for a graph compiled and run without Flowloom's runner (tests, benches)."""

    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep


S = TypeVar("S", bound=RuntimeServices)
T = TypeVar("T")
EventSink = Callable[[RunEvent], None]


def _ignore(event: RunEvent) -> None:
    return None


@dataclass(slots=True)
class RunContext(Generic[S]):
    """Per-run runtime context handed to the compiled graph as LangGraph's `context`."""

    execution_id: str
    workflow_id: str | None = None
    services: S = field(default_factory=BasicServices)  # type: ignore[assignment]
    emit: EventSink = _ignore
    attempts: dict[str, int] = field(default_factory=dict)
    semaphores: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    # What every item of a running foreach chunk sees (inputs, run, outer outputs, path),
    # held here while the chunk runs, so it is checkpointed once a chunk, not once an item.
    chunk_scopes: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_concurrency: int | None = None  # nodes awaiting at once, across the whole run
    stopping: bool = False  # a node failed the run: nothing new starts
    guard: Callable[[], Awaitable[None]] | None = None  # before a node starts: may we?
    expression_seconds: float = 0.0  # spent by the expressions of all its nodes
    max_expression_seconds: float = MAX_RUN_RENDER_SECONDS
    state_bytes: int = 0  # the outputs its nodes produced so far, about as JSON
    max_state_bytes: int | None = MAX_RUN_STATE_BYTES


    def semaphore(self, key: str, size: int) -> asyncio.Semaphore:
        sem = self.semaphores.get(key)
        if sem is None:
            sem = self.semaphores[key] = asyncio.Semaphore(size)
        return sem

    def slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A place among the run's `max_concurrency` nodes running at once."""
        if self.max_concurrency is None:
            return contextlib.nullcontext()
        return self.semaphore(":run", self.max_concurrency)


@dataclass(slots=True)
class Scope:
    """What expressions of one node can see."""

    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    run: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=dict)  # item/index/loop in bodies

    def namespace(self, **more: Any) -> dict[str, Any]:
        extra = {**self.extra, **more} if more else self.extra
        return namespace(inputs=self.inputs, outputs=self.outputs, run=self.run, extra=extra)


@dataclass(slots=True)
class NodeContext(Generic[S]):
    """Everything one node execution may use."""

    node_id: str
    path: str  # node id qualified by enclosing loops, e.g. `each[3].fetch`
    scope: Scope
    expressions: Expressions
    run: RunContext[S]
    attempt: int = 1
    first_started_at: float = 0.0  # when the node first started, kept across resumes
    upstream: Mapping[str, Any] = field(default_factory=dict)  # outputs of taken in-edges
    meta: dict[str, Any] = field(default_factory=dict)  # extra node state: cached, usage, ...
    budget: Budget | None = None  # what its expressions may still spend, once they start
    # Each templated config field as rendered (and expression as evaluated), by field name:
    # recorded with the node, redacted, as its config "as rendered" (`execute.settle_meta`).
    rendered: dict[str, Any] | None = None

    @property
    def services(self) -> S:
        return self.run.services

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and resumes: execution id plus the qualified node path."""
        return f"{self.run.execution_id}:{self.path}"

    async def render(self, value: Any, *, field: str, **extra: Any) -> Any:
        """Every template string inside the JSON `value`, rendered; other values as
        they are."""
        if not has_template(value):
            return value
        budget = self.budget or self._start_budget()
        ns, expressions = self.scope.namespace(**extra), self.expressions

        def work() -> Any:
            return expressions.render(value, ns, field=field, budget=budget)
        try:  # on the event loop first, with no await: most evaluations end there
            result = on_the_loop(budget, work)
        except LeaveTheLoop:
            result = await self._later(field, budget, work)
        except ExpressionError as exc:
            raise self._named(exc) from None
        except LimitExceeded as exc:  # the node's budget was spent before
            raise self._limit(field, exc) from None
        return self._keep(field, result)

    async def evaluate(self, expression: str, *, field: str, **extra: Any) -> Any:
        budget = self.budget or self._start_budget()
        ns, expressions = self.scope.namespace(**extra), self.expressions

        def work() -> Any:
            return expressions.evaluate(expression, ns, field=field, budget=budget)
        try:
            result = on_the_loop(budget, work)
        except LeaveTheLoop:
            result = await self._later(field, budget, work)
        except ExpressionError as exc:
            raise self._named(exc) from None
        except LimitExceeded as exc:
            raise self._limit(field, exc) from None
        return self._keep(field, result)

    async def evaluate_each(self, expression: str, names: Iterable[Mapping[str, Any]], *,
                            field: str) -> list[Any]:
        """`expression` once with each of `names` in scope, as one evaluation: the
        items share the node's budget, and leave the event loop together."""
        budget = self.budget or self._start_budget()
        scope, expressions, names = self.scope, self.expressions, tuple(names)

        def work() -> list[Any]:
            return [expressions.evaluate(expression, scope.namespace(**more), field=field,
                                         budget=budget) for more in names]
        try:
            return on_the_loop(budget, work)
        except LeaveTheLoop:
            return await self._later(field, budget, work)
        except ExpressionError as exc:
            raise self._named(exc) from None
        except LimitExceeded as exc:
            raise self._limit(field, exc) from None

    def _keep(self, field: str, result: T) -> T:
        if self.rendered is None:
            self.rendered = {}
        self.rendered[field] = result
        return result

    def _start_budget(self) -> Budget:
        expressions, run = self.expressions, self.run
        budget = self.budget = Budget(expressions.max_seconds,
                                      max_chars=expressions.max_output_chars)
        budget.run = run
        left = run.max_expression_seconds - run.expression_seconds
        if left < budget.seconds:  # the run's budget is the one that ends first
            budget.seconds = max(left, 0.0)
            budget.why = (f"the run's expressions took longer than "
                          f"{run.max_expression_seconds:g}s in all")
        return budget

    def _named(self, exc: ExpressionError) -> ExpressionError:
        exc.node_id = self.node_id
        return exc

    def _limit(self, field: str, exc: LimitExceeded) -> ExpressionError:
        return self._named(ExpressionError(f"limit exceeded: {exc}", field=field,
                                           kind="LimitExceeded"))

    async def _later(self, field: str, budget: Budget, work: Callable[[], T]) -> T:
        try:
            return await off_the_loop(budget, work)
        except ExpressionError as exc:
            raise self._named(exc) from None
        except LimitExceeded as exc:  # timed out waiting for, or in, a worker thread
            raise self._limit(field, exc) from None

    def log(self, message: str, level: str = "info") -> None:
        self.run.emit({"event": "log", "node_id": self.path, "level": level,
                       "message": message, "at": self.services.clock()})
