"""Node type name -> node type. Adding a type is one module plus one line here."""

from __future__ import annotations

from nodes.action import Action
from nodes.ai import Ai
from nodes.approval import Approval
from nodes.base import NodeType
from nodes.condition import Condition
from nodes.delay import Delay
from nodes.email import Email
from nodes.end import End
from nodes.filter import Filter
from nodes.foreach import Foreach
from nodes.http import Http
from nodes.join import Join
from nodes.parallel import Parallel
from nodes.start import Start
from nodes.subworkflow import Subworkflow
from nodes.switch import Switch
from nodes.transform import Transform
from nodes.while_loop import While

NODE_TYPES: dict[str, NodeType] = {}


def register_node_type(node_type: NodeType) -> None:
    NODE_TYPES[node_type.name] = node_type


def get_node_type(name: str) -> NodeType | None:
    return NODE_TYPES.get(name)


for _type in (Start(), End(), Transform(), Condition(), Switch(), Parallel(), Join(),
              Foreach(), While(), Filter(), Delay(), Http(), Ai(), Email(), Action(),
              Approval(), Subworkflow()):
    register_node_type(_type)
