"""The runtime context a node runs in: its scope and the services it may use.

Nodes never import `app`: the HTTP client, cache, clock and settings arrive here, so tests
hand in real local servers and the runner hands in production ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.expressions import Expressions, namespace

EventSink = Callable[[dict[str, Any]], None]


def _ignore(event: dict[str, Any]) -> None:
    return None


@dataclass(slots=True)
class Services:
    """Long-lived helpers shared by every node of a run (and across runs)."""

    http: Any = None  # httpx.AsyncClient
    llm: Any = None  # chat-model factory
    cache: Any = None  # LLM response cache
    tools: Any = None  # ToolProvider of `action` nodes
    subflows: Any = None  # child runs of `subworkflow` nodes
    settings: Mapping[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Any] = asyncio.sleep


@dataclass(slots=True)
class RunContext:
    """Per-run runtime context handed to the compiled graph as LangGraph's `context`."""

    execution_id: str
    workflow_id: str | None = None
    services: Services = field(default_factory=Services)
    emit: EventSink = _ignore
    attempts: dict[str, int] = field(default_factory=dict)
    semaphores: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    def semaphore(self, key: str, size: int) -> asyncio.Semaphore:
        sem = self.semaphores.get(key)
        if sem is None:
            sem = self.semaphores[key] = asyncio.Semaphore(size)
        return sem


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
class NodeContext:
    """Everything one node execution may use."""

    node_id: str
    path: str  # node id qualified by enclosing loops, e.g. `each[3].fetch`
    scope: Scope
    expressions: Expressions
    run: RunContext
    attempt: int = 1
    first_started_at: float = 0.0  # when the node first started, kept across resumes
    upstream: Mapping[str, Any] = field(default_factory=dict)  # outputs of taken in-edges
    meta: dict[str, Any] = field(default_factory=dict)  # extra node state: cached, usage, ...

    @property
    def services(self) -> Services:
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
