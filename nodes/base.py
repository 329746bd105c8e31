"""What every node type is: a pydantic `Config`, an async `run`, and how it routes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from flowloom.nodes.context import NodeContext


class NodeConfig(BaseModel):
    """Base of every node type's `Config`: unknown keys are refused so typos surface."""

    model_config = ConfigDict(extra="forbid")


class EmptyConfig(NodeConfig):
    model_config = ConfigDict(extra="allow")  # builders put labels and colours here


class NodeType:
    """One node type. Subclasses set `name`, `Config`, and implement `run`.

    `templates` and `expressions` name the config fields that are Jinja templates or bare
    expressions, so the validator can parse them before anything runs. `ports` lists the
    branch labels the node can route (besides `error`, which every node has); None means
    any label is allowed (a switch's case names are checked by `check_ports`).
    `structural` types are expanded by the compiler instead of running as one step.
    `waits` is False for types whose `run` only computes, never awaits: no timer is
    armed for them (it could not fire inside synchronous work anyway; their expressions
    have their own time budget).
    """

    name: ClassVar[str]
    Config: ClassVar[type[NodeConfig]] = EmptyConfig
    templates: ClassVar[tuple[str, ...]] = ()
    expressions: ClassVar[tuple[str, ...]] = ()
    ports: ClassVar[frozenset[str]] = frozenset()
    structural: ClassVar[bool] = False
    side_effects: ClassVar[bool] = False
    waits: ClassVar[bool] = True

    async def run(self, config: Any, ctx: NodeContext) -> Any:
        raise NotImplementedError(f"node type `{self.name}` does not run as a single step")

    def route(self, config: Any, output: Any) -> list[str]:
        """The ports that fire after a successful run; "" is the plain success path."""
        return [""]

    def check_ports(self, config: Any, labels: set[str]) -> list[str]:
        """Problems with the branch labels wired to this node (besides `error`)."""
        allowed = self.ports
        return [f"branch `{label}` does not exist on a `{self.name}` node"
                for label in sorted(labels - allowed)]

    def nested_bodies(self, raw_config: Mapping[str, Any]) -> dict[str, Any]:
        """Nested workflow documents in the config (loop bodies), by field name."""
        return {}
