"""Node type name -> node type. Adding a type is one module plus one line here."""

from __future__ import annotations

from flowloom.graphs.nodetype import NodeType
from flowloom.nodes.action import Action
from flowloom.nodes.ai import Ai
from flowloom.nodes.approval import Approval
from flowloom.nodes.condition import Condition
from flowloom.nodes.delay import Delay
from flowloom.nodes.email import Email
from flowloom.nodes.end import End
from flowloom.nodes.filter import Filter
from flowloom.nodes.foreach import Foreach
from flowloom.nodes.http import Http
from flowloom.nodes.join import Join
from flowloom.nodes.parallel import Parallel
from flowloom.nodes.start import Start
from flowloom.nodes.subworkflow import Subworkflow
from flowloom.nodes.switch import Switch
from flowloom.nodes.transform import Transform
from flowloom.nodes.while_loop import While

NODE_TYPES: dict[str, NodeType] = {}


def register_node_type(node_type: NodeType) -> None:
    NODE_TYPES[node_type.name] = node_type


def get_node_type(name: str) -> NodeType | None:
    return NODE_TYPES.get(name)


for _type in (Start(), End(), Transform(), Condition(), Switch(), Parallel(), Join(),
              Foreach(), While(), Filter(), Delay(), Http(), Ai(), Email(), Action(),
              Approval(), Subworkflow()):
    register_node_type(_type)
