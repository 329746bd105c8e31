"""What one node's expressions may spend: time, size of each value, and memory.

A `Budget` is shared by every expression a node execution evaluates (each field, each
item of a `filter`), and its deadline is also capped by what is left of the run's.
The sandbox checks it inside every loop, call, allocating operator and filter.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2.exceptions import SecurityError

MAX_OUTPUT_CHARS = 1_000_000  # one value: text length, or elements nested in a list/dict
MAX_RENDER_SECONDS = 0.5  # expression time of one node execution, all fields and items
MAX_RUN_RENDER_SECONDS = 30.0  # expression time of a whole run, all nodes and items
MAX_NODE_BYTES = 64 * 1024 * 1024  # estimated memory a node's expressions allocate
LOOP_SLICE_SECONDS = 0.01  # how long a node's expressions may hold the event loop
WORKER_YIELD_SECONDS = 0.002  # how often a worker thread lets the event loop run
MAX_RANGE = 100_000
MAX_POWER_BITS = 100_000  # integer results of `*` and `**`
MAX_SORT_ITEMS = 100_000  # sort, unique, dictsort, groupby: C work no check can split
MAX_SCANNED_CHARS = 100_000  # text a regular expression scans in one C call


class LimitExceeded(SecurityError):
    """An expression went past its time, size or memory budget."""


class LeaveTheLoop(BaseException):
    """The expression used up its time on the event loop: evaluate it again off the loop.
    A BaseException, so neither Jinja nor a filter catches it on the way."""


_INF = float("inf")


class Budget:
    """Time is the evaluating thread's CPU time, so a busy machine or a wait for the GIL
    does not count against it; it is read only once the cheap clock says it may be due.
    A budget used directly (no `cpu_deadline`) counts wall time.

    A plain class with defaults on the class: one is made for every node execution that
    evaluates anything, and only what changes is stored on it."""

    deadline: float = _INF  # time.monotonic() at which to look at the time spent
    max_chars: int = MAX_OUTPUT_CHARS
    max_bytes: int = MAX_NODE_BYTES
    allocated: int = 0  # estimated bytes allocated so far
    restart_allocated: int = 0  # what was allocated before the evaluation going on
    spent: float = 0.0  # seconds spent evaluating, over all this budget's evaluations
    loop_spent: float = 0.0  # of which on the event loop
    leave_at: float = _INF  # on the event loop: when to hand over to a thread
    cpu_deadline: float | None = None  # in a worker: its thread_time() budget's end
    why: str = "render took longer than {seconds:g}s"

    run: Any = None  # what else counts the seconds spent (the RunContext), if anything
    watch: Any = None  # on the main thread's loop: its stopwatch (offload._Stopwatch)

    def __init__(self, seconds: float, deadline: float = _INF,
                 max_chars: int = MAX_OUTPUT_CHARS) -> None:
        self.seconds = seconds  # the time budget in force, named in the message
        if deadline != _INF:
            self.deadline = deadline
        if max_chars != MAX_OUTPUT_CHARS:
            self.max_chars = max_chars

    def add_spent(self, seconds: float) -> None:
        self.spent += seconds
        if self.run is not None:
            self.run.expression_seconds += seconds

    def timed_out(self) -> str:
        return self.why.format(seconds=self.seconds)

    def check_time(self) -> None:
        now = time.monotonic()
        if now > self.leave_at or now > self.deadline:
            self._stop(now)

    def _stop(self, now: float) -> None:
        if now > self.leave_at:  # on the loop, any limit: go on off the loop
            later = self.watch.extend(now) if self.watch is not None else None
            if later is None:
                raise LeaveTheLoop
            self.leave_at = later  # the machine was busy, not this evaluation
            return
        if self.cpu_deadline is None:
            raise LimitExceeded(self.timed_out())
        cpu = time.thread_time()
        if cpu >= self.cpu_deadline:
            raise LimitExceeded(self.timed_out())
        # A worker thread looks this often: it lets the event loop's thread have the
        # GIL (else that waits for the interpreter's switch interval, and the OS).
        time.sleep(0)
        self.deadline = now + min(self.cpu_deadline - cpu, WORKER_YIELD_SECONDS)

    def check_size(self, size: int, what: str = "result") -> None:
        if size > self.max_chars:
            raise LimitExceeded(f"{what} would exceed {self.max_chars:,} characters")

    def charge(self, nbytes: int, what: str) -> None:
        """Count memory about to be (or just) allocated against the node's budget."""
        self.allocated += nbytes
        if self.allocated > self.max_bytes:
            raise LimitExceeded(f"{what}: the node's expressions would allocate more than "
                                f"{self.max_bytes // (1024 * 1024)} MiB")


def fresh_budget(seconds: float = MAX_RENDER_SECONDS,
                 max_chars: int = MAX_OUTPUT_CHARS) -> Budget:
    return Budget(seconds, time.monotonic() + seconds, max_chars)


_current: ContextVar[Budget] = ContextVar("flowloom_budget")


def current() -> Budget:
    try:
        return _current.get()
    except LookupError:  # outside an evaluation: e.g. a template object used directly
        return fresh_budget()


def enter(budget: Budget) -> Any:
    return _current.set(budget)


def leave(token: Any) -> None:
    _current.reset(token)


_TEXT_SCALARS = (str, bytes)
# Concrete types: isinstance() against the abc views would cost a microsecond a value.
_CONTAINERS: tuple[type, ...] = (list, tuple, dict, set, frozenset, type({}.keys()),
                                 type({}.values()), type({}.items()))


def size_of(value: Any, limit: int) -> int:
    """Logical size: characters of text plus elements of containers, nested ones counted
    each time they are reached (so `[[1] * 1000] * 1000` is a million). Stops counting
    soon after `limit`."""
    return _walk(value, limit, text=False)


def text_size(value: Any, limit: int, indent: int = 0, *, timed: bool = True) -> int:
    """About how long `str(value)` or its JSON (indented by `indent`) would be. Stops
    counting soon after `limit`. Inside an evaluation (`timed`) it checks the budget's
    time as it goes."""
    return _walk(value, limit, text=True, indent=indent, timed=timed)


def _scalar_text(value: Any) -> int:
    if isinstance(value, _TEXT_SCALARS):
        return len(value) + 2
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 31 // 100 + 2
    return 24  # floats, Undefined, macros...: their text is short


_NUMBERS = frozenset({int, float, bool, type(None)})
_INTEGERS = frozenset({int, bool})


def _flat_size(values: Any, text: bool) -> int | None:
    """The size of a sequence of plain scalars, at C speed; None if it holds others."""
    kinds = set(map(type, values))
    if kinds <= _NUMBERS:
        if not text:
            return 0
        if kinds <= _INTEGERS:
            widest = max(map(abs, values), default=0)
            return len(values) * (widest.bit_length() * 31 // 100 + 2)
        return 24 * len(values)
    if kinds == {str}:
        return sum(map(len, values)) + (2 * len(values) if text else 0)
    return None


def _walk(value: Any, limit: int, *, text: bool, indent: int = 0, timed: bool = True) -> int:
    if not isinstance(value, _CONTAINERS):
        if isinstance(value, _TEXT_SCALARS):
            return len(value) + (2 if text else 0)
        return _scalar_text(value) if text else 1
    budget = current()
    total, popped = 0, 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if text:
            per_item = (4 if isinstance(item, dict) else 2) + (indent * depth + 1 if indent
                                                               else 0)
            total += 2 + per_item * len(item) + (indent * depth + 1 if indent else 0)
        else:
            total += len(item)
        if total > limit:
            return total
        children: Any = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        flat = _flat_size(children, text) if len(children) > 16 else None
        if flat is not None:
            total += flat
        else:
            for child in children:
                kind = type(child)
                if kind is str:
                    total += len(child) + 2 if text else len(child)
                elif kind in _NUMBERS:
                    total += _scalar_text(child) if text else 0
                elif isinstance(child, _CONTAINERS):
                    stack.append((child, depth + 1))
                elif text:
                    total += _scalar_text(child)
                elif isinstance(child, _TEXT_SCALARS):
                    total += len(child)
        if total > limit:
            return total
        popped += 1
        if timed and popped % 1024 == 0:
            budget.check_time()
    return total


def bytes_of(item: Any) -> int:
    """A shallow estimate of the memory a new value takes: enough to bound allocation."""
    if isinstance(item, str):
        return 49 + len(item)
    if isinstance(item, list | tuple | set | dict):
        return 56 + 8 * len(item)
    return 32


def metered(values: Iterable[Any], what: str) -> Iterator[Any]:
    """Items of a lazy filter result, checking the time and charging each new item."""
    budget = current()
    for item in values:
        budget.check_time()
        budget.charge(bytes_of(item), what)
        yield item


def paced(values: Iterable[Any], per_item_bytes: int) -> Iterator[Any]:
    """Items of a `{% for %}` loop: the time checked before each pass, and the loop
    body's literal text charged for it."""
    budget = current()
    for item in values:
        budget.check_time()
        if per_item_bytes:
            budget.charge(per_item_bytes, "loop output")
        yield item
