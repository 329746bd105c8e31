"""The compiler's entry points with Flowloom's node types wired in: what the Python API,
the CLI and the HTTP service call. `flowloom.graphs` takes the registry as an argument."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowloom.graphs import loader as _loader
from flowloom.graphs import mermaid as _mermaid
from flowloom.graphs import state as _state
from flowloom.graphs.errors import Problem
from flowloom.graphs.expressions import Expressions
from flowloom.graphs.spec import WorkflowSpec
from flowloom.nodes.registry import NODE_TYPES

if TYPE_CHECKING:  # the compiler loads LangGraph: only compiling and running need it
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from flowloom.graphs.compile import Graph


def load_workflow(document: Any) -> WorkflowSpec:
    """Any dialect -> the canonical model; raises SpecError listing every problem."""
    return _loader.load_workflow(document, NODE_TYPES)


def validate_workflow(document: Any, *, include_warnings: bool = False) -> list[Problem]:
    """Every problem of a document in any dialect; [] when it is valid."""
    return _loader.validate_workflow(document, NODE_TYPES, include_warnings=include_warnings)


def compile_workflow(spec: WorkflowSpec, checkpointer: BaseCheckpointSaver[Any] | None = None,
                     *, expressions: Expressions | None = None) -> Graph:
    """A compiled LangGraph graph; pure, no I/O."""
    from flowloom.graphs import compile as _compile

    return _compile.compile_workflow(spec, checkpointer, node_types=NODE_TYPES,
                                     expressions=expressions)


def to_mermaid(spec: WorkflowSpec) -> str:
    return _mermaid.to_mermaid(spec, NODE_TYPES)


async def workflow_output(spec: WorkflowSpec, state: Mapping[str, Any],
                          expressions: Expressions) -> Any:
    return await _state.workflow_output(spec, state, expressions, NODE_TYPES)
