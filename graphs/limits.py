"""How deep and how large a JSON value may be wherever one enters a run: inputs,
approval answers and node outputs. Deeper values could not be read back from the store."""

from __future__ import annotations

import json
from typing import Any

from flowloom.graphs.errors import WorkflowError

MAX_VALUE_DEPTH = 64  # levels of objects and arrays; `{"a": [1]}` is 2 levels deep


class ValueTooLarge(WorkflowError):
    """A value nested too deep or too large; `path` is where, `what` is whose value."""

    def __init__(self, what: str, path: str, message: str) -> None:
        self.what = what
        self.path = path
        self.message = message
        super().__init__(f"{what} at {path}: {message}")


def _step(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def deepest_path(value: Any, max_depth: int) -> str | None:
    """The JSON path of the first object or array at level `max_depth + 1`, if any.
    Iterative, so a value nested thousands of levels deep cannot exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, list | tuple):
            children = enumerate(item)
        else:
            continue
        if depth > max_depth:
            return path
        stack.extend((child, _step(path, key), depth + 1) for key, child in children
                     if isinstance(child, dict | list | tuple))
    return None


def check_value_shape(value: Any, *, what: str, max_depth: int = MAX_VALUE_DEPTH,
                      max_bytes: int | None = None) -> None:
    """Raise ValueTooLarge naming `what` and the path when `value` is nested deeper than
    `max_depth` levels, or is over `max_bytes` as JSON (when given)."""
    path = deepest_path(value, max_depth)
    if path is not None:
        raise ValueTooLarge(what, path, f"nested deeper than {max_depth} levels; "
                                        f"the limit is MAX_VALUE_DEPTH={max_depth}")
    if max_bytes is not None:
        size = len(json.dumps(value, default=str).encode())
        if size > max_bytes:
            raise ValueTooLarge(what, "$", f"{size:,} bytes; the limit is {max_bytes:,}")


__all__ = ["MAX_VALUE_DEPTH", "ValueTooLarge", "check_value_shape", "deepest_path"]
