"""Pydantic models of the canonical workflow document (workflow-format.md)."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
WORKFLOW_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

MAX_NODES = 1000
MAX_NODE_CONFIG_BYTES = 10 * 1024
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_NESTING_DEPTH = 5
DEFAULT_NODE_TIMEOUT_S = 300.0
MAX_NODE_TIMEOUT_S = 3600.0


class _Open(BaseModel):
    # Unknown keys (`position`, builder metadata) are kept, so documents round-trip.
    model_config = ConfigDict(extra="allow")


class RetrySpec(_Open):
    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_delay_s: float = Field(default=1.0, ge=0)
    backoff: float = Field(default=2.0, ge=1)
    max_delay_s: float = Field(default=60.0, ge=0)
    jitter: bool = True


class NodeSpec(_Open):
    id: str = Field(pattern=ID_PATTERN)
    type: str
    name: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    timeout_s: float = Field(default=DEFAULT_NODE_TIMEOUT_S, gt=0, le=MAX_NODE_TIMEOUT_S)
    on_error: Literal["fail", "continue"] = "fail"


class EdgeSpec(_Open):
    source: str
    target: str
    branch: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "source" not in data and "from" in data:
                data["source"] = data.pop("from")
            if "target" not in data and "to" in data:
                data["target"] = data.pop("to")
        return data

    @property
    def port(self) -> str:
        """The outgoing port this edge hangs on: "" is the success path."""
        return self.branch or ""


class WorkflowSettings(_Open):
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    timeout_s: float = Field(default=3600.0, gt=0)


class WorkflowSpec(_Open):
    id: str | None = Field(default=None, pattern=WORKFLOW_ID_PATTERN)
    name: str | None = None
    version: int = Field(default=1, ge=1)
    description: str | None = None
    inputs_schema: dict[str, Any] | None = None
    settings: WorkflowSettings = Field(default_factory=WorkflowSettings)
    nodes: list[NodeSpec]
    edges: list[EdgeSpec] = Field(default_factory=list)
    output: Any = None

    @cached_property
    def unset_outputs(self) -> dict[str, None]:
        """Every node id, with no output yet: what expressions see before anything ran.
        Shared: copy it, never change it."""
        return dict.fromkeys(node.id for node in self.nodes)

    def node(self, node_id: str) -> NodeSpec:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)
