"""What the compiler needs of a node type. Node types live in `flowloom.nodes`; the
compiler sees them only through this class and a registry its caller hands in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from flowloom.graphs.context import NodeContext

Expansion = Literal["fan_out", "repeat"]
NodeTypes = Mapping[str, "NodeType"]


class NodeConfig(BaseModel):
    """Base of every node type's `Config`: unknown keys are refused so typos surface."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EmptyConfig(NodeConfig):
    model_config = ConfigDict(extra="allow", frozen=True)  # builders put labels here


class NodeType:
    """One node type. Subclasses set `name`, `Config`, and implement `run`.

    What the compiler reads, so that it never tests a type's name:
    - `templates`/`expressions`: config fields parsed by the validator before anything runs.
    - `ports`: branch labels the node can route besides `error`; `required_ports` are the
      ones a workflow should wire (a warning otherwise).
    - `expands`: the type is compiled into loop steps instead of one step: `fan_out`
      sends each item to the body with `Send` (as `foreach`), `repeat` runs the body while
      its condition holds (as `while`). Its `Config` then has that loop's fields
      (`graphs.loops` reads them).
    - `durable_start`: the first start is checkpointed before `run`, so a resumed run
      continues from it (a delay waits only for what remains).
    - `side_effects`: the node touches the outside world; its idempotency key is recorded.
    - `waits`: False for types whose `run` only computes: it awaits nothing but its
      expressions (bounded by their own time budget), and no timer is armed.
    - `pauses`: the node may stop the run to wait for an answer (`interrupt`).
    - `entry`/`exit`: where runs start, and which nodes the output rule prefers.
    - `masked_fields` and `secret_names`: what to hide of its config as rendered for the
      record besides what `graphs.redact.redact` hides by name (`masked_fields` hold a
      URL's query values; `secret_names` are keys that hold credentials).
    """

    name: ClassVar[str]
    Config: ClassVar[type[NodeConfig]] = EmptyConfig
    templates: ClassVar[tuple[str, ...]] = ()
    expressions: ClassVar[tuple[str, ...]] = ()
    ports: ClassVar[frozenset[str]] = frozenset()
    required_ports: ClassVar[frozenset[str]] = frozenset()
    expands: ClassVar[Expansion | None] = None
    durable_start: ClassVar[bool] = False
    side_effects: ClassVar[bool] = False
    waits: ClassVar[bool] = True
    pauses: ClassVar[bool] = False
    entry: ClassVar[bool] = False
    exit: ClassVar[bool] = False
    shape: ClassVar[tuple[str, str]] = ("[", "]")  # Mermaid brackets
    masked_fields: ClassVar[tuple[str, ...]] = ()

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        raise NotImplementedError(f"node type `{self.name}` does not run as a single step")

    def route(self, config: Any, output: Any) -> list[str]:
        """The ports that fire after a successful run; "" is the plain success path."""
        return [""]

    def secret_names(self, config: Any) -> Iterable[str]:
        """Keys in its config (any depth, any case) whose values are credentials."""
        return ()

    def join_any(self, config: Any) -> bool:
        """Whether the node fires on its first taken in-edge instead of waiting for all."""
        return False

    def check_ports(self, config: Any, labels: set[str]) -> list[str]:
        """Problems with the branch labels wired to this node (besides `error`)."""
        return [f"branch `{label}` does not exist on a `{self.name}` node"
                for label in sorted(labels - self.ports)]

    def nested_bodies(self, raw_config: Mapping[str, Any]) -> dict[str, Any]:
        """Nested workflow documents in the config (loop bodies), by field name."""
        return {}

    def max_passes(self, config: Any) -> int:
        """For `expands == "repeat"`: the most passes the loop may take."""
        return 0
