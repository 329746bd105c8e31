"""JSON Schema checks that never leave the document: `$ref` resolves only inside it.

jsonschema's default registry fetches unknown `$ref` URIs (http, file) with urlopen; a
workflow author could point one at an internal service or a local file. Here every
retrieval fails, so such a ref is a problem of the document, named by its JSON path.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flowloom.graphs.errors import Problem, WorkflowError

if TYPE_CHECKING:  # jsonschema loads on the first schema checked (~70 ms at start-up)
    from referencing import Registry, Resource

# Keywords whose values are data, not subschemas: a `$ref` inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
_REF_KEYWORDS = ("$ref", "$dynamicRef")


class InvalidSchema(WorkflowError):
    """A schema that cannot be used; `path` is relative to the schema (`$` is its root)."""

    def __init__(self, path: str, message: str) -> None:
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}")


def _refuse(uri: str) -> Resource[Any]:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class mypy misreads


@functools.cache
def offline() -> Registry[Any]:
    """The registry every check uses: it retrieves nothing."""
    from referencing import Registry

    return Registry(retrieve=_refuse)  # type: ignore[call-arg]


def schema_problems(schema: Any, path: str = "$") -> list[Problem]:
    """Why `schema` is not a usable JSON Schema (2020-12) with local refs only; [] if it is."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from referencing.jsonschema import DRAFT202012

    if not isinstance(schema, dict | bool):
        return [Problem(path, f"a JSON Schema must be an object or a boolean, "
                              f"got {type(schema).__name__}")]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        return [Problem(path + where, f"not a valid JSON Schema: {exc.message}")]
    if isinstance(schema, bool):
        return []
    root = DRAFT202012.create_resource(schema)
    return list(_unresolvable(schema, path, offline().resolver_with_root(root)))


def _unresolvable(node: Any, path: str, resolver: Any) -> Iterator[Problem]:
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _unresolvable(item, f"{path}[{i}]", resolver)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("$id"), str):  # a new base URI for the refs below
        resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
    for key in _REF_KEYWORDS:
        ref = node.get(key)
        if isinstance(ref, str):
            try:
                resolver.lookup(ref)
            except Unresolvable:
                yield Problem(f"{path}.{key}", f"`{ref}` does not resolve inside the "
                              "document; references to other documents are not fetched")
    for key, value in node.items():
        if key not in _DATA_KEYWORDS:
            yield from _unresolvable(value, f"{path}.{key}", resolver)


def validation_errors(schema: Any, value: Any) -> list[tuple[str, str]]:
    """`(json_path, message)` of each way `value` fails `schema`, first paths first.
    Raises InvalidSchema when the schema itself is unusable."""
    from jsonschema import Draft202012Validator
    from referencing.exceptions import Unresolvable

    problems = schema_problems(schema)
    if problems:
        raise InvalidSchema(problems[0].path, problems[0].message)
    validator = Draft202012Validator(schema, registry=offline())
    try:
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    except Unresolvable as exc:  # the walk above should have caught it; never fetch anyway
        raise InvalidSchema("$", f"a reference does not resolve: {exc}") from None
    return [(e.json_path, e.message) for e in errors]
