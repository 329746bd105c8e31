"""The services node types use, as Protocols: the runner hands in real ones, tests hand
in real local servers. Nodes never import `app`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from flowloom.graphs.context import NodeContext
from flowloom.graphs.limits import MAX_DESCENDANT_RUNS, MAX_RUN_STATE_BYTES

if TYPE_CHECKING:
    import httpx

Answer = dict[str, Any]


class ChatModel(Protocol):
    """An OpenAI-compatible chat endpoint (`nodes.llm.OpenAIChat`)."""

    base_url: str | None

    async def complete(self, request: dict[str, Any]) -> Answer: ...


class ResponseCache(Protocol):
    """The LLM response cache: (answer, cached) for a request digest."""

    async def get_or_call(self, digest: str, ttl_s: int,
                          call: Callable[[], Awaitable[Answer]]) -> tuple[Answer, bool]: ...


class ToolProvider(Protocol):
    """Where `action` nodes run their tools."""

    async def execute(self, *, tool: str, action: str, connection_id: str | None,
                      arguments: dict[str, Any], idempotency_key: str) -> Any: ...


class ChildRuns(Protocol):
    """Runs `subworkflow` children; returns (output, child execution id)."""

    async def run(self, *, parent_execution_id: str, node_path: str,
                  workflow_id: str | None, version: int | None,
                  workflow: dict[str, Any] | None,
                  inputs: dict[str, Any]) -> tuple[Any, str]: ...


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """The settings node types read (the service's settings, narrowed to these)."""

    http_allow_private: bool = False
    http_allow_hosts: str | None = None
    http_max_response_bytes: int = 10 * 1024 * 1024
    llm_cache_ttl_s: int = 3600
    smtp_url: str | None = None
    max_run_state_bytes: int = MAX_RUN_STATE_BYTES  # what the runner lets one run keep
    max_descendant_runs: int = MAX_DESCENDANT_RUNS  # child runs below one root run


@dataclass(slots=True)
class Services:
    """Long-lived helpers shared by every node of a run (and across runs)."""

    http: httpx.AsyncClient | None = None
    llm: ChatModel | None = None
    cache: ResponseCache | None = None
    tools: ToolProvider | None = None
    subflows: ChildRuns | None = None
    settings: NodeSettings = field(default_factory=NodeSettings)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep


Context: TypeAlias = NodeContext[Services]
