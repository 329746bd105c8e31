"""Jinja's filters, each bounded by the node's budget (see budget.py).

Every filter checks the time before it runs. One that turns its input into text first
checks how long that text would be; a lazy result (`map`, `select`, `batch`...) is
metered item by item; new strings and lists are charged to the node's memory budget.
Filters whose output can be far larger than their input (`wordwrap`, `indent`,
`center`, `format`, `replace`, `join`, `sum`, `tojson`, `pprint`, `urlize`) estimate
it before they allocate, and `%` formatting is estimated the same way wherever it runs.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sized
from itertools import islice
from typing import Any

from jinja2 import filters as jinja_filters
from jinja2.utils import pass_environment, pass_eval_context

from flowloom.graphs.budget import (
    MAX_RANGE,
    MAX_SCANNED_CHARS,
    MAX_SORT_ITEMS,
    LimitExceeded,
    bytes_of,
    current,
    metered,
    size_of,
    text_size,
)

# Filters that turn their input into text, and those that return new values.
TEXT_FILTERS = frozenset({
    "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower",
    "pprint", "replace", "safe", "string", "striptags", "title", "tojson", "trim",
    "truncate", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"})
NEW_VALUES = TEXT_FILTERS | {"batch", "dictsort", "groupby", "items", "join", "list", "map",
                             "pick", "reject", "rejectattr", "reverse", "select",
                             "selectattr", "slice", "sort", "unique"}
SORTING = frozenset({"dictsort", "groupby", "sort", "unique"})
# Filters whose regular expressions scan the whole text in one C call.
SCANNING = frozenset({"striptags", "title", "urlize", "wordcount", "wordwrap"})

_PERCENT = re.compile(r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?"
                      r"(?:\.(?P<precision>\*|\d+))?[hlL]?(?P<conversion>.?)")


def check_percent(fmt: str, args: Any) -> None:
    """Refuse `fmt % args` whose widths, or whose text, would pass the size limit."""
    budget = current()
    limit = budget.max_chars
    positional = args if isinstance(args, tuple) else (args,)
    size, index = len(fmt), 0
    for spec in _PERCENT.finditer(fmt):
        numbers = (spec["width"], spec["precision"])
        if "*" in numbers or any(n and int(n) > limit for n in numbers):
            raise LimitExceeded("format width or precision is too large")
        if spec["conversion"] == "%":
            continue
        if spec["key"] is not None and isinstance(args, Mapping):
            value = args.get(spec["key"])
        else:
            value = positional[index] if index < len(positional) else None
            index += 1
        size += max(int(spec["width"] or 0), int(spec["precision"] or 0) + 32,
                    text_size(value, limit))
        if size > limit:
            break
    budget.check_size(size, "formatted text")
    budget.charge(size, "formatted text")


class BoundedRange:
    """`range` for templates: at most MAX_RANGE items."""

    def __init__(self, *args: int) -> None:
        self._range = range(*args)
        if len(self._range) > MAX_RANGE:
            raise LimitExceeded(f"range of {len(self._range):,} items exceeds {MAX_RANGE:,}")

    def __iter__(self) -> Iterator[int]:
        return metered(self._range, "range")

    def __len__(self) -> int:
        return len(self._range)


def _center(value: str, width: int = 80) -> str:
    current().check_size(int(width), "center width")
    return jinja_filters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    budget = current()
    pad = width if isinstance(width, str) else " " * min(int(width), budget.max_chars + 1)
    budget.check_size(len(pad) * (str(s).count("\n") + 1) + len(str(s)), "indent")
    return jinja_filters.do_indent(s, width, first, blank)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    check_percent(str(value), kwargs or args)
    return jinja_filters.do_format(value, *args, **kwargs)


@pass_eval_context
def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    check_replace(str(s), str(old), str(new))
    return str(jinja_filters.do_replace(eval_ctx, s, old, new, count))


def check_replace(text: str, old: str, new: str) -> None:
    hits = len(text) + 1 if old == "" else text.count(old)
    current().check_size(len(text) + hits * len(new), "replace")


class _Wrapper(textwrap.TextWrapper):
    def _handle_long_word(self, *args: Any) -> None:
        current().check_time()  # each call copies the rest of the word: quadratic
        super()._handle_long_word(*args)  # type: ignore[misc]


@pass_environment
def _wordwrap(environment: Any, s: str, width: int = 79, break_long_words: bool = True,
              wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    """Jinja's wordwrap, its output estimated first and its time checked per line."""
    s, budget = str(s), current()
    wrapstring = environment.newline_sequence if wrapstring is None else str(wrapstring)
    lines = len(s) // max(int(width), 1) + s.count("\n") + 1
    budget.check_size(len(s) + lines * len(wrapstring), "wordwrap")
    wrapper = _Wrapper(width=width, expand_tabs=False, replace_whitespace=False,
                       break_long_words=break_long_words, break_on_hyphens=break_on_hyphens)
    out = []
    for line in s.splitlines():
        budget.check_time()
        out.append(wrapstring.join(wrapper.wrap(line)))
    return wrapstring.join(out)


@pass_eval_context
def _join(eval_ctx: Any, value: Any, d: str = "", attribute: str | int | None = None) -> str:
    if attribute is not None:
        value = map(jinja_filters.make_attrgetter(eval_ctx.environment, attribute), value)
    items = value if isinstance(value, list | tuple) else list(value)
    budget = current()
    size = len(str(d)) * max(len(items) - 1, 0)
    for i, item in enumerate(items):
        size += len(item) if isinstance(item, str) else text_size(item, budget.max_chars)
        if size > budget.max_chars:
            break
        if i % 4096 == 4095:
            budget.check_time()
    budget.check_size(size, "join")
    budget.charge(size, "join")
    return jinja_filters.sync_do_join(eval_ctx, items, d)


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: str | int | None = None,
         start: Any = 0) -> Any:
    """Jinja's sum: numbers added a chunk at a time between time checks; lists and
    tuples joined with their size checked as they grow, not copied once per item."""
    if attribute is not None:
        iterable = map(jinja_filters.make_attrgetter(environment, attribute), iterable)
    budget, items = current(), iter(iterable)
    if isinstance(start, str):
        return sum((), start)  # TypeError, as sum() answers
    if not isinstance(start, list | tuple):
        total = start
        while chunk := list(islice(items, 4096)):
            budget.check_time()
            total = sum(chunk, total)
        return total
    out, size = list(start), size_of(start, budget.max_chars)
    for item in items:
        budget.check_time()
        if not isinstance(item, type(start)):
            return start + item  # the TypeError `+` gives
        size += size_of(item, budget.max_chars)
        budget.check_size(size, "sum")
        budget.charge(8 * len(item), "sum")
        out.extend(item)
    return out if isinstance(start, list) else tuple(out)


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: int | str | None = None) -> Any:
    width = len(indent) if isinstance(indent, str) else int(indent or 0)
    current().check_size(text_size(value, current().max_chars, width), "tojson")
    return jinja_filters.do_tojson(eval_ctx, value, indent)  # type: ignore[arg-type]


def _pprint(value: Any) -> str:
    current().check_size(text_size(value, current().max_chars, 1), "pprint")
    return jinja_filters.do_pprint(value)


@pass_eval_context
def _urlize(eval_ctx: Any, value: str, *args: Any, **kwargs: Any) -> str:
    text = str(value)
    attrs = sum(len(str(a)) for a in (*args, *kwargs.values()) if isinstance(a, str))
    links = text.count(".") + text.count("@") + text.count(":")
    current().check_size(2 * len(text) + links * (64 + attrs), "urlize")
    return jinja_filters.do_urlize(eval_ctx, value, *args, **kwargs)


def _pick(value: Any, mapping: Mapping[str, str]) -> Any:
    """`{new_key: "dotted.path"}` of a dict, or of each dict in a list (missing: none)."""
    if isinstance(value, list | tuple):
        return [_pick(item, mapping) for item in value]
    out = {}
    for key, path in mapping.items():
        found: Any = value
        for part in str(path).split("."):
            found = found.get(part) if isinstance(found, dict) else None
        out[key] = found
    return out


OWN: dict[str, Callable[..., Any]] = {
    "center": _center, "indent": _indent, "format": _format, "replace": _replace,
    "wordwrap": _wordwrap, "join": _join, "sum": _sum, "tojson": _tojson,
    "pprint": _pprint, "urlize": _urlize, "pick": _pick}


def guarded(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` with the budget checks every filter gets."""
    pass_arg = getattr(func, "jinja_pass_arg", None)
    at = 0 if pass_arg is None else 1  # where the filtered value is among the arguments
    text_in, new_values, sorting = name in TEXT_FILTERS, name in NEW_VALUES, name in SORTING
    limit = MAX_SCANNED_CHARS if name in SCANNING else None
    what = f"|{name}"

    def bounded_filter(*args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.check_time()
        if len(args) > at:
            value = args[at]
            if text_in:
                size = len(value) if isinstance(value, str) else text_size(
                    value, budget.max_chars)
                budget.check_size(size, f"the text {what} works on")
                if limit is not None and size > limit:
                    raise LimitExceeded(f"{what} scans at most {limit:,} characters")
            elif sorting:
                if not isinstance(value, Sized):
                    value = list(value)
                    args = (*args[:at], value, *args[at + 1:])
                if len(value) > MAX_SORT_ITEMS:
                    raise LimitExceeded(f"{what} of {len(value):,} items exceeds "
                                        f"{MAX_SORT_ITEMS:,}")
        result = func(*args, **kwargs)
        if isinstance(result, Iterator):
            return metered(result, what)
        if new_values and isinstance(result, str | list | tuple | dict):
            budget.check_size(len(result), what)
            budget.charge(bytes_of(result), what)
        return result

    if pass_arg is not None:
        bounded_filter.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    bounded_filter.__name__ = getattr(func, "__name__", name)
    return bounded_filter


def bounded_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Every filter of `filters` (Jinja's defaults) and Flowloom's own, bounded."""
    merged = {**filters, **OWN}
    return {name: guarded(name, func) for name, func in merged.items()}
