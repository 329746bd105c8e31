"""Shared config of the loop types, whose `body` is a nested workflow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowloom.graphs.nodetype import NodeConfig, NodeType


class LoopConfig(NodeConfig):
    body: dict[str, Any]


class LoopType(NodeType):

    def nested_bodies(self, raw_config: Mapping[str, Any]) -> dict[str, Any]:
        body = raw_config.get("body")
        return {"body": body} if isinstance(body, dict) else {}
