"""The one error hierarchy of Flowloom: every error names its culprit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a workflow document, located by a JSON path."""

    path: str
    message: str
    level: str = "error"  # or "warning"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "level": self.level}


class WorkflowError(Exception):
    """Base of every error Flowloom raises on purpose."""


class SpecError(WorkflowError):
    """A workflow document is invalid; carries every problem found at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(self._summary())

    def _summary(self) -> str:
        errors = [p for p in self.problems if p.level == "error"]
        lines = [f"invalid workflow: {len(errors)} problem(s)"]
        lines += [f"  {p}" for p in errors]
        return "\n".join(lines)


class CompileError(WorkflowError):
    """A valid document that cannot be turned into a graph."""


class InputError(WorkflowError):
    """Run inputs that do not match the workflow's `inputs_schema`."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"inputs{path[1:] if path.startswith('$') else path}: {message}")


class NodeError(WorkflowError):
    """A node failed. `retriable` says whether another attempt may succeed."""

    def __init__(
        self,
        message: str,
        *,
        node_id: str | None = None,
        field: str | None = None,
        kind: str = "NodeError",
        retriable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        self.message = message
        self.node_id = node_id
        self.field = field
        self.kind = kind
        self.retriable = retriable
        self.retry_after_s = retry_after_s
        super().__init__(message)

    where: str | None = None  # names the place when no node does (the workflow's output)

    def __str__(self) -> str:
        if self.where:
            return f"{self.where}: {self.message}"
        where = f"node `{self.node_id}`" if self.node_id else "node"
        if self.field:
            where += f", field `{self.field}`"
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "message": str(self)}


class ExpressionError(NodeError):
    """A template or expression failed: unknown name, type error, sandbox violation, limits."""

    def __init__(self, message: str, *, field: str | None = None,
                 kind: str = "ExpressionError") -> None:
        super().__init__(message, field=field, kind=kind)

