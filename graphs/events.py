"""The events of a run: one definition for whoever emits, stores, folds or shows them.

Events are plain dicts on the wire (orjson, the store, SSE), typed here per kind. The
runner adds `seq`, `execution_id` and a default `at` to each one it records (`Recorded`).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, get_args

from typing_extensions import TypedDict  # pydantic reads it on 3.11 (the OpenAPI document)


class Recorded(TypedDict):
    seq: int
    execution_id: str


class RunStarted(TypedDict):
    event: Literal["run.started"]


class RunWaiting(TypedDict):
    event: Literal["run.waiting"]
    waiting_for: list[dict[str, Any]]


class RunFinished(TypedDict):
    event: Literal["run.finished"]
    status: str


class NodeStarted(TypedDict):
    event: Literal["node.started"]
    node_id: str  # the node's path, e.g. `each[3].fetch`
    attempt: int
    at: float
    first_started_at: NotRequired[float]  # a `durable_start` node: checkpointed first start
    items_total: NotRequired[int]  # a `foreach`: how many items it runs


class NodeSucceeded(TypedDict):
    event: Literal["node.succeeded"]
    node_id: str
    attempt: int
    at: float
    output: Any
    meta: dict[str, Any]


class NodeFailed(TypedDict):
    event: Literal["node.failed"]
    node_id: str
    at: float
    error: dict[str, Any]
    meta: dict[str, Any]
    handled: bool  # an `error` edge or `on_error` took over; the run goes on
    attempt: NotRequired[int]


class NodeRetrying(TypedDict):
    event: Literal["node.retrying"]
    node_id: str
    attempt: int
    at: float
    reason: str
    delay_s: float


class NodeSkipped(TypedDict):
    event: Literal["node.skipped"]
    node_id: str
    at: float


class NodeCancelled(TypedDict):
    event: Literal["node.cancelled"]
    node_id: str
    at: float


class NodeWaiting(TypedDict):
    event: Literal["node.waiting"]
    node_id: str
    at: float
    request: Any


class Log(TypedDict):
    event: Literal["log"]
    node_id: str
    level: str
    message: str
    at: float


NodeEvent = (NodeStarted | NodeSucceeded | NodeFailed | NodeRetrying | NodeSkipped
             | NodeCancelled | NodeWaiting | Log)
RunEvent = RunStarted | RunWaiting | RunFinished | NodeEvent

EventKind = Literal["run.started", "run.waiting", "run.finished", "node.started",
                    "node.succeeded", "node.failed", "node.retrying", "node.skipped",
                    "node.cancelled", "node.waiting", "log"]


class WireEvent(TypedDict, total=False):
    """A recorded event as stored, streamed and folded: any kind above, plus what the
    runner adds (`seq`, `execution_id`). Readers use this one shape; `event` says which
    of the kinds' keys are there."""

    seq: int
    execution_id: str
    event: EventKind
    at: float
    node_id: str
    attempt: int
    first_started_at: float
    items_total: int
    output: Any
    meta: dict[str, Any]
    error: dict[str, Any]
    handled: bool
    reason: str
    delay_s: float
    request: Any
    level: str
    message: str
    status: str
    waiting_for: list[dict[str, Any]]


EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
