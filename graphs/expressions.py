"""One expression language for templates and conditions: Jinja2 in an immutable sandbox.

Everything an expression can reach goes through `Sandbox`: attribute access (the
sandbox refuses internals such as `__class__`), calls, the operators that can blow up
memory (`*`, `**`, `%`, `+`, `~`), list and dict literals, every filter, and every
`{% for %}` pass. Each checks the node's budget (budget.py): time, the size of each
value, and the memory its expressions allocate.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowloom.graphs import budget as budgets
from flowloom.graphs.bounded import BoundedRange, bounded_filters, check_percent, check_replace
from flowloom.graphs.budget import (
    MAX_OUTPUT_CHARS,
    MAX_POWER_BITS,
    MAX_RANGE,
    MAX_RENDER_SECONDS,
    Budget,
    LimitExceeded,
    bytes_of,
    current,
    size_of,
)
from flowloom.graphs.errors import ExpressionError
from flowloom.graphs.instrument import INSTRUMENT_FILTERS, finalize, instrument
from flowloom.graphs.nesting import token_nesting_problem, tree_depth_problem

__all__ = ["MAX_OUTPUT_CHARS", "MAX_POWER_BITS", "MAX_RANGE", "MAX_RENDER_SECONDS",
           "Expressions", "LimitExceeded", "Sandbox", "namespace", "single_expression"]

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_UNSAFE_STR_METHODS = frozenset({"format", "format_map"})
_JOINING = frozenset({"join"})  # str.join: its size is estimated before it runs
_SCALARS = frozenset({int, float, bool, type(None)})


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
                         finalize=finalize)
        self.globals = {"range": BoundedRange, "dict": dict}
        self.filters = {**bounded_filters(self.filters), **INSTRUMENT_FILTERS}

    def compile(self, source: Any, name: str | None = None, filename: str | None = None,
                raw: bool = False, defer_init: bool = False) -> Any:
        if isinstance(source, str):
            source = self.parse(source, name, filename)
        return super().compile(instrument(source), name, filename, raw,  # type: ignore[call-overload]
                               defer_init)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # JSON first: `inputs.items` is the key "items", not the dict method.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> None:
        return None  # Jinja would hand out a sandboxed str.format: refuse it instead

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_STR_METHODS:
            return False  # str.format reaches attributes by name: use the `format` filter
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        budget.check_time()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    size = size_of(seq, budget.max_chars) * max(times, 0)
                    budget.check_size(size, "repetition")
                    budget.charge(size if isinstance(seq, str) else 8 * len(seq) * times,
                                  "repetition")
            if (isinstance(left, int) and isinstance(right, int)
                    and left.bit_length() + right.bit_length() > MAX_POWER_BITS):
                raise LimitExceeded("product is too large")
        elif operator == "**":
            if (isinstance(left, int) and isinstance(right, int) and abs(left) > 1
                    and right * abs(left).bit_length() > MAX_POWER_BITS):
                raise LimitExceeded("power result is too large")
        elif operator == "%" and isinstance(left, str):
            check_percent(left, right)
        elif operator == "+" and isinstance(left, str | list | tuple):
            size = size_of(left, budget.max_chars) + size_of(right, budget.max_chars)
            budget.check_size(size, "concatenation")
            budget.charge(bytes_of(left) + bytes_of(right), "concatenation")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.check_time()
        name = getattr(__obj, "__name__", "")
        target = getattr(__obj, "__self__", None)
        if isinstance(target, str):
            if name in _PADDING_METHODS and args and isinstance(args[0], int):
                budget.check_size(args[0], f"str.{name} width")
            if name == "expandtabs":
                budget.check_size(len(target) * (int(args[0]) if args else 8), "expandtabs")
            if name == "replace" and len(args) >= 2:
                check_replace(target, str(args[0]), str(args[1]))
            if name in _JOINING and args:
                items = args[0] if isinstance(args[0], list | tuple) else list(args[0])
                args = (items, *args[1:])
                size = len(target) * max(len(items) - 1, 0) + sum(
                    len(item) for item in items if isinstance(item, str))
                budget.check_size(size, "str.join")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(target, str) or __obj is dict or name == "copy":  # new values
            budget.check_size(size_of(result, budget.max_chars), f"the result of {name}()")
            budget.charge(bytes_of(result), f"{name}()")
        return result


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def has_template(value: Any) -> bool:
    """Whether a JSON value holds a template string anywhere."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    return False


def single_expression(text: str) -> str | None:
    """The inner expression of a string that is exactly one `{{ expr }}`, else None."""
    match = _SINGLE_EXPRESSION.match(text)
    if match is None:
        return None
    inner = match.group("expr")
    if ("{{" in inner or "}}" in inner or "{%" in inner) and not _one_expression(inner):
        return None  # `{{ a }} and {{ b }}`; but `{{ {'k': '}}'} }}` is one expression
    return inner


@lru_cache(maxsize=1024)
def _one_expression(inner: str) -> bool:
    """Whether `inner` parses as one whole expression (a delimiter in it is then inside
    a string literal or nested braces). Too deep to parse is not one: the template's own
    checks then report it."""
    try:
        if token_nesting_problem(_SANDBOX.lex("{{" + inner + "}}")):
            return False
        parser = Parser(_SANDBOX, inner, state="variable")
        parser.parse_expression()
    except TemplateSyntaxError:
        return False
    return parser.stream.eos


class KeyNotJson(TypeError):
    """A result holds a mapping key JSON cannot carry (`{(1, 2): 3}`): the run's state,
    record and checkpoints are JSON."""


def _first_undefined(value: Any) -> Undefined | None:
    """The first undefined value inside a result; raises KeyNotJson on the way."""
    if isinstance(value, Undefined):
        return value
    if isinstance(value, list | tuple):
        items: Any = value
    elif isinstance(value, dict):
        for key in value:
            if key is not None and not isinstance(key, str | int | float):
                raise KeyNotJson(f"a mapping key must be text, a number, true, false or "
                                 f"none, not {type(key).__name__} {key!r}")
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
    if isinstance(exc, KeyNotJson):
        return str(exc)
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
    source = "{{ (" + text + "\n) }}" if expression else text
    try:
        if too_deep := token_nesting_problem(_SANDBOX.lex(source)):
            return too_deep
        return tree_depth_problem(_SANDBOX.parse(source))
    except TemplateSyntaxError as exc:
        return _describe(exc)


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

    def budget(self, *, start: bool = True) -> Budget:
        """A budget for the expressions of one node execution, its clock running (or
        not yet: evaluate_budgeted starts it)."""
        deadline = time.monotonic() + self.max_seconds if start else float("inf")
        return budgets.Budget(self.max_seconds, deadline, self.max_output_chars)

    def _stream(self, chunks: Iterator[str]) -> str:
        budget = current()
        out: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            budget.check_size(size, "rendered text")
            budget.check_time()
            out.append(chunk)
        return "".join(out)

    def _run(self, text: str, namespace: Mapping[str, Any], expression: bool, field: str,
             budget: Budget | None) -> Any:
        budget = budget or self.budget()
        token = budgets.enter(budget)
        try:
            value = self._compile(text, expression)(namespace)
            if (undefined := _first_undefined(value)) is not None:
                undefined._fail_with_undefined_error()
            if type(value) not in _SCALARS:  # most results: nothing to measure
                budget.check_size(size_of(value, budget.max_chars))
            return value
        except ExpressionError:
            raise
        except Exception as exc:
            raise ExpressionError(_describe(exc), field=field, kind=(
                "LimitExceeded" if isinstance(exc, LimitExceeded) else "ExpressionError")
            ) from None
        finally:
            budgets.leave(token)

    def evaluate(self, expression: str, namespace: Mapping[str, Any], *, field: str,
                 budget: Budget | None = None) -> Any:
        """Evaluate a bare expression such as `inputs.amount > 100` (within `budget`, or
        a budget of its own)."""
        if is_template(expression) and (inner := single_expression(expression)) is not None:
            expression = inner  # tolerate `{{ ... }}` around an expression
        return self._run(expression, namespace, True, field, budget)

    def render(self, value: Any, namespace: Mapping[str, Any], *, field: str,
               budget: Budget | None = None) -> Any:
        """Render every template string inside a JSON value; other values pass through.
        All of them share `budget` (by default, one of their own)."""
        if isinstance(value, str):
            return (self._run(value, namespace, False, field, budget) if is_template(value)
                    else value)
        if isinstance(value, dict):
            budget = budget or self.budget()
            return {k: self.render(v, namespace, field=f"{field}.{k}", budget=budget)
                    for k, v in value.items()}
        if isinstance(value, list):
            budget = budget or self.budget()
            return [self.render(v, namespace, field=f"{field}[{i}]", budget=budget)
                    for i, v in enumerate(value)]
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
