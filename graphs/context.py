"""The runtime context a compiled graph runs in: per run, and per node execution.

The compiler needs only a clock and a sleep of the services; the services a node type
uses (HTTP, models, cache) are its own business and arrive through the same object.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.events import RunEvent
from flowloom.graphs.expressions import Expressions, namespace


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

    @property
    def services(self) -> S:
        return self.run.services

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and resumes: execution id plus the qualified node path."""
        return f"{self.run.execution_id}:{self.path}"

    def render(self, value: Any, *, field: str, **extra: Any) -> Any:
        try:
            return self.expressions.render(value, self.scope.namespace(**extra), field=field)
        except ExpressionError as exc:
            exc.node_id = self.node_id
            raise

    def evaluate(self, expression: str, *, field: str, **extra: Any) -> Any:
        try:
            return self.expressions.evaluate(
                expression, self.scope.namespace(**extra), field=field
            )
        except ExpressionError as exc:
            exc.node_id = self.node_id
            raise

    def log(self, message: str, level: str = "info") -> None:
        self.run.emit({"event": "log", "node_id": self.path, "level": level,
                       "message": message, "at": self.services.clock()})
