"""How deep and how large a JSON value may be wherever one enters a run: inputs,
approval answers and node outputs. Deeper values could not be read back from the store."""

from __future__ import annotations

import json
import math
from typing import Any

from flowloom.graphs.errors import WorkflowError

MAX_VALUE_DEPTH = 64  # levels of objects and arrays; `{"a": [1]}` is 2 levels deep
MAX_RUN_STATE_BYTES = 64 * 1024 * 1024  # all outputs of a run's nodes, about as JSON
MAX_DESCENDANT_RUNS = 10_000  # child runs below one root run, all levels counted


class ValueTooLarge(WorkflowError):
    """A value refused where it enters a run: nested too deep, too large, or not JSON
    (NaN, Infinity, a lone surrogate); `path` is where, `what` is whose value."""

    def __init__(self, what: str, path: str, message: str) -> None:
        self.what = what
        self.path = path
        self.message = message
        super().__init__(f"{what} at {path}: {message}")


_CONTAINERS = (dict, list, tuple)


def _step(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def _too_deep(value: Any, max_depth: int) -> bool:
    """The fast walk every node output takes: no paths, only containers are stacked."""
    if not isinstance(value, _CONTAINERS):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > max_depth:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, _CONTAINERS):
                push((child, depth + 1))
    return False


def deepest_path(value: Any, max_depth: int) -> str | None:
    """The JSON path of an object or array at level `max_depth + 1`, if there is one.
    Iterative, so a value nested thousands of levels deep cannot exhaust the stack."""
    if not _too_deep(value, max_depth):
        return None
    stack: list[tuple[Any, str, int]] = [(value, "$", 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            return path
        children = item.items() if isinstance(item, dict) else enumerate(item)
        stack.extend((child, _step(path, key), depth + 1) for key, child in children
                     if isinstance(child, _CONTAINERS))
    return None  # pragma: no cover - _too_deep found a level this walk reaches


def _bad_scalar(value: Any) -> bool:
    if type(value) is float:
        return not math.isfinite(value)
    return type(value) is str and not value.isascii() and _has_surrogate(value)


def _suspect(value: Any, max_depth: int) -> bool:
    """The fast walk every node output takes: anything nested too deep, or a number or
    text JSON cannot carry. Paths are found only when something is."""
    if not isinstance(value, _CONTAINERS):
        return _bad_scalar(value)
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > max_depth:
            return True
        if isinstance(item, dict) and any(_bad_scalar(key) for key in item):
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, _CONTAINERS):
                push((child, depth + 1))
            elif _bad_scalar(child):
                return True
    return False


def check_value_shape(value: Any, *, what: str, max_depth: int = MAX_VALUE_DEPTH,
                      max_bytes: int | None = None) -> None:
    """Raise ValueTooLarge naming `what` and the path when `value` is nested deeper than
    `max_depth` levels, holds a number or text JSON cannot carry (NaN, Infinity, a lone
    surrogate), or is over `max_bytes` as JSON (when given)."""
    if _suspect(value, max_depth):
        path = deepest_path(value, max_depth)
        if path is not None:
            raise ValueTooLarge(what, path, f"nested deeper than {max_depth} levels; "
                                            f"the limit is MAX_VALUE_DEPTH={max_depth}")
        path, why = not_json(value)
        raise ValueTooLarge(what, path, why)
    if max_bytes is not None:
        size = len(json.dumps(value, default=str, ensure_ascii=False).encode())
        if size > max_bytes:
            raise ValueTooLarge(what, "$", f"{size:,} bytes; the limit is {max_bytes:,}")


def not_json(value: Any) -> tuple[str, str]:
    """Where a value that JSON cannot carry (as stored and read back) is, and why."""
    stack: list[tuple[Any, str]] = [(value, "$")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path, f"{item} is not a JSON number"
        if isinstance(item, str) and _has_surrogate(item):
            return path, "the text holds a lone surrogate, which is not valid Unicode"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _has_surrogate(key):
                    return _step(path, key), "the key holds a lone surrogate"
                stack.append((child, _step(path, key)))
        elif isinstance(item, list | tuple):
            stack.extend((child, _step(path, i)) for i, child in enumerate(item))
    return "$", "not valid JSON"  # pragma: no cover - _suspect found something above


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


__all__ = ["MAX_DESCENDANT_RUNS", "MAX_RUN_STATE_BYTES", "MAX_VALUE_DEPTH", "ValueTooLarge",
           "check_value_shape", "deepest_path"]
