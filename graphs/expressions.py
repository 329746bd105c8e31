"""One expression language for templates and conditions: Jinja2 in an immutable sandbox.

Everything an expression can reach goes through `Sandbox`: attribute access (the
sandbox refuses internals such as `__class__`), calls, the operators that can blow up
memory (`*`, `**`, `%`, `+`), `range`, and the filters that pad or repeat text. Render
time and output size are bounded per render.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.filters import do_center, do_format, do_indent, do_replace
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowloom.graphs.errors import ExpressionError

MAX_OUTPUT_CHARS = 1_000_000
MAX_RENDER_SECONDS = 2.0
MAX_RANGE = 100_000
MAX_POWER_BITS = 100_000

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_PERCENT_WIDTH = re.compile(r"%[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_UNSAFE_STR_METHODS = frozenset({"format", "format_map"})


class LimitExceeded(SecurityError):
    """A render went past its time or size budget."""


@dataclass(slots=True)
class _Budget:
    deadline: float
    max_chars: int
    seconds: float = MAX_RENDER_SECONDS

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"render took longer than {self.seconds:g}s")

    def check_size(self, size: int, what: str = "result") -> None:
        if size > self.max_chars:
            raise LimitExceeded(f"{what} would exceed {self.max_chars:,} characters")


_budget: ContextVar[_Budget] = ContextVar("flowloom_render_budget")


def _current_budget() -> _Budget:
    try:
        return _budget.get()
    except LookupError:  # outside render(): e.g. a template object used directly
        return _Budget(time.monotonic() + MAX_RENDER_SECONDS, MAX_OUTPUT_CHARS)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else 0


def _check_percent_format(fmt: str) -> None:
    budget = _current_budget()
    for width, precision in _PERCENT_WIDTH.findall(fmt):
        for number in (width, precision):
            if number == "*" or (number and int(number) > budget.max_chars):
                raise LimitExceeded("format width or precision is too large")


class BoundedRange:
    """`range` for templates: at most MAX_RANGE items, and checks the time budget as it goes."""

    def __init__(self, *args: int) -> None:
        self._range = range(*args)
        if len(self._range) > MAX_RANGE:
            raise LimitExceeded(f"range of {len(self._range):,} items exceeds {MAX_RANGE:,}")

    def __iter__(self) -> Iterator[int]:
        budget = _current_budget()
        for i, value in enumerate(self._range):
            if i % 1024 == 0:
                budget.check_time()
            yield value

    def __len__(self) -> int:
        return len(self._range)


def _safe_center(value: str, width: int = 80) -> str:
    _current_budget().check_size(int(width), "center width")
    return do_center(value, width)


def _safe_indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    pad = width if isinstance(width, str) else " " * min(int(width), MAX_OUTPUT_CHARS + 1)
    _current_budget().check_size(len(pad) * (str(s).count("\n") + 1) + len(str(s)), "indent")
    return do_indent(s, width, first, blank)


def _safe_format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_percent_format(str(value))
    return do_format(value, *args, **kwargs)


def _safe_replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    occurrences = (len(str(s)) + 1) if old == "" else str(s).count(str(old))
    _current_budget().check_size(len(str(s)) + occurrences * len(str(new)), "replace")
    return str(do_replace(eval_ctx, s, old, new, count))


_safe_replace.jinja_pass_arg = do_replace.jinja_pass_arg  # type: ignore[attr-defined]


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


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.globals = {"range": BoundedRange, "dict": dict, "lipsum": None}
        self.globals.pop("lipsum")
        self.filters.update(
            center=_safe_center, indent=_safe_indent, format=_safe_format, replace=_safe_replace,
            pick=_pick,
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        # JSON first: `inputs.items` is the key "items", not the dict method.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_STR_METHODS:
            return False  # str.format reaches attributes by name: use the `format` filter
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _current_budget()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    budget.check_size(len(seq) * max(times, 0), "repetition")
        elif operator == "**":
            if (isinstance(left, int) and isinstance(right, int) and abs(left) > 1
                    and right * abs(left).bit_length() > MAX_POWER_BITS):
                raise LimitExceeded("power result is too large")
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        elif operator == "+":
            budget.check_size(_size(left) + _size(right), "concatenation")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _current_budget()
        budget.check_time()
        name = getattr(__obj, "__name__", "")
        if isinstance(getattr(__obj, "__self__", None), str):
            target: str = __obj.__self__
            if name in _PADDING_METHODS and args and isinstance(args[0], int):
                budget.check_size(args[0], f"str.{name} width")
            if name == "expandtabs":
                budget.check_size(len(target) * (int(args[0]) if args else 8), "expandtabs")
            if name == "replace" and len(args) >= 2:
                old, new = str(args[0]), str(args[1])
                hits = len(target) + 1 if old == "" else target.count(old)
                budget.check_size(len(target) + hits * len(new), "replace")
        return super().call(__context, __obj, *args, **kwargs)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def single_expression(text: str) -> str | None:
    """The inner expression of a string that is exactly one `{{ expr }}`, else None."""
    match = _SINGLE_EXPRESSION.match(text)
    if match is None:
        return None
    inner = match.group("expr")
    if "{{" in inner or "}}" in inner or "{%" in inner:
        return None
    return inner


def _first_undefined(value: Any) -> Undefined | None:
    if isinstance(value, Undefined):
        return value
    if isinstance(value, list | tuple):
        items: Any = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return None
    for item in items:
        if (found := _first_undefined(item)) is not None:
            return found
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UndefinedError):
        return f"unknown name or attribute: {exc.message}"
    if isinstance(exc, LimitExceeded):
        return f"limit exceeded: {exc}"
    if isinstance(exc, SecurityError):
        return f"not allowed in the sandbox: {exc}"
    if isinstance(exc, RecursionError):
        return "recursion too deep"
    if isinstance(exc, TemplateSyntaxError):
        return f"syntax error at line {exc.lineno}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


_SANDBOX = Sandbox()


@lru_cache(maxsize=4096)
def syntax_problem(text: str, *, expression: bool = False) -> str | None:
    """Why `text` does not parse as a template (or bare expression), or None. Parsing
    only: code generation waits for the compiler, once per workflow."""
    if expression and any(mark in text for mark in ("{{", "}}", "{%", "%}")):
        if single_expression(text) is None:
            return "an expression is bare Jinja, without {{ }} or {% %} blocks"
        text = single_expression(text) or ""
    try:
        if expression:
            _SANDBOX.parse("{{ (" + text + "\n) }}")
        else:
            _SANDBOX.parse(text)
    except TemplateSyntaxError as exc:
        return _describe(exc)
    return None


def referenced_names(text: str) -> set[str]:
    """Top-level names a template reads; used to warn about typos at validation time."""
    try:
        ast = _SANDBOX.parse(text)
    except TemplateSyntaxError:
        return set()
    return {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}


Compiled = Callable[[Mapping[str, Any]], Any]


def _reusing_context(expression: Any, only_read: Callable[[Mapping[str, Any]], dict[str, Any]]
                     ) -> Compiled:
    """Jinja's TemplateExpression call without a new Context each time (most of its cost
    on a run's hot path): evaluation is synchronous and never re-enters itself, so one
    context is reset and reused, by the thread that made it; other threads take
    Jinja's own path. The sandbox's checks live in the environment, untouched."""
    template = expression._template
    context = template.new_context({})
    render, shared = template.root_render_func, template.globals
    owner = threading.get_ident()

    def evaluate(ns: Mapping[str, Any]) -> Any:
        names = only_read(ns)
        if threading.get_ident() != owner:
            return expression(**names)
        context.parent = {**shared, **names}
        context.vars = {}
        context.exported_vars = set()
        try:
            for _ in render(context):
                pass
            return context.vars["result"]
        finally:  # hold no run's data between calls
            context.parent, context.vars = shared, {}

    return evaluate


def _compile_expression(inner: str) -> tuple[TemplateExpression, tuple[str, ...]]:
    """Jinja's `compile_expression(inner, undefined_to_none=False)`, and the names the
    expression reads, from one parse: an expression binds no name, so every name it
    loads comes from the context (a second parse and a tracking pass cost as much as
    Jinja's code generation)."""
    parser = Parser(_SANDBOX, inner, state="variable")
    try:
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno,
                                      None, None)
        expr.set_environment(_SANDBOX)
    except TemplateSyntaxError:
        _SANDBOX.handle_exception(source=inner)
    found = [expr, *expr.find_all(nodes.Name)]  # find_all skips the node it starts from
    names = tuple(dict.fromkeys(n.name for n in found
                                if isinstance(n, nodes.Name) and n.ctx == "load"))
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
    template = _SANDBOX.from_string(nodes.Template(body, lineno=1))
    return TemplateExpression(template, False), names


class Expressions:
    """Compiles each template or expression once per workflow and renders it in the sandbox."""

    def __init__(
        self, *, max_output_chars: int = MAX_OUTPUT_CHARS, max_seconds: float = MAX_RENDER_SECONDS
    ) -> None:
        self._compiled: dict[tuple[str, bool], Compiled] = {}
        self.max_output_chars = max_output_chars
        self.max_seconds = max_seconds

    def _compile(self, text: str, expression: bool) -> Compiled:
        key = (text, expression)
        compiled = self._compiled.get(key)
        if compiled is None:
            inner = text if expression else single_expression(text)
            # Hand Jinja only the names the text reads: its context copies every name
            # given, and a workflow's namespace holds every node's output.
            if inner is not None:
                evaluate, names = _compile_expression(inner)
            else:
                template = _SANDBOX.from_string(text)
                names = tuple(meta.find_undeclared_variables(_SANDBOX.parse(text)))

            def only_read(ns: Mapping[str, Any], names: tuple[str, ...] = names
                          ) -> dict[str, Any]:
                return {name: ns[name] for name in names if name in ns}

            if inner is not None:
                compiled = _reusing_context(evaluate, only_read)
            else:
                compiled = lambda ns, _t=template: self._stream(  # noqa: E731
                    _t.generate(**only_read(ns)))
            self._compiled[key] = compiled
        return compiled

    def _stream(self, chunks: Iterator[str]) -> str:
        budget = _current_budget()
        out: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            budget.check_size(size, "rendered text")
            budget.check_time()
            out.append(chunk)
        return "".join(out)

    def _run(self, text: str, namespace: Mapping[str, Any], expression: bool, field: str) -> Any:
        token = _budget.set(_Budget(time.monotonic() + self.max_seconds, self.max_output_chars,
                                    self.max_seconds))
        try:
            value = self._compile(text, expression)(namespace)
            if (undefined := _first_undefined(value)) is not None:
                undefined._fail_with_undefined_error()
            _budget.get().check_size(_size(value))
            return value
        except ExpressionError:
            raise
        except Exception as exc:
            raise ExpressionError(_describe(exc), field=field) from None
        finally:
            _budget.reset(token)

    def evaluate(self, expression: str, namespace: Mapping[str, Any], *, field: str) -> Any:
        """Evaluate a bare expression such as `inputs.amount > 100`."""
        if is_template(expression) and (inner := single_expression(expression)) is not None:
            expression = inner  # tolerate `{{ ... }}` around an expression
        return self._run(expression, namespace, True, field)

    def render(self, value: Any, namespace: Mapping[str, Any], *, field: str) -> Any:
        """Render every template string inside a JSON value; other values pass through."""
        if isinstance(value, str):
            return self._run(value, namespace, False, field) if is_template(value) else value
        if isinstance(value, dict):
            return {k: self.render(v, namespace, field=f"{field}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v, namespace, field=f"{field}[{i}]") for i, v in enumerate(value)]
        return value


def namespace(
    *,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    run: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Names in scope: unqualified names resolve to a node output first, then to an input."""
    ns: dict[str, Any] = {**inputs, **outputs}
    ns["inputs"] = inputs
    ns["outputs"] = outputs
    ns["run"] = run
    if extra:
        ns.update(extra)
    return ns
