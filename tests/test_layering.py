"""The layers import one way (app -> nodes -> graphs), and the compiler stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from flowloom.nodes.registry import NODE_TYPES
from tests.conftest import REPO

FORBIDDEN = {"graphs": ("flowloom.app", "flowloom.nodes"), "nodes": ("flowloom.app",)}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, TYPE_CHECKING blocks and function bodies included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.startswith("flowloom."):  # importlib by name
            found.append((node.lineno, node.value))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_never_imports_a_layer_above_it(layer: str) -> None:
    breaches = [f"{path.relative_to(REPO)}:{line} imports {module}"
                for path in sorted((REPO / layer).rglob("*.py"))
                for line, module in imported_modules(path)
                if module.startswith(FORBIDDEN[layer])]
    assert breaches == []


def test_the_check_sees_a_breach(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                   "    from flowloom.nodes.registry import NODE_TYPES\n"
                   "def f():\n    import flowloom.app.runner\n")
    assert imported_modules(bad) == [(1, "typing"), (3, "flowloom.nodes.registry"),
                                     (5, "flowloom.app.runner")]


def type_tests(source: str) -> list[int]:
    """Lines that compare something with a node type's name or read a node's `.type`."""
    names = set(NODE_TYPES)
    return sorted({node.lineno for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.Compare)
                   for part in ast.walk(node)
                   if (isinstance(part, ast.Constant) and part.value in names)
                   or (isinstance(part, ast.Attribute) and part.attr == "type")})


def test_the_compiler_never_tests_a_node_types_name() -> None:
    """Node types say what the compiler needs as attributes; `dialects.py` alone names
    types, because it translates other engines' documents into ours."""
    found = [f"{path.name}:{line}"
             for path in sorted((REPO / "graphs").glob("*.py")) if path.name != "dialects.py"
             for line in type_tests(path.read_text())]
    assert found == []


def test_the_name_check_sees_a_name_test() -> None:
    assert type_tests('if node.type in ("foreach", "x"):\n    pass\n'
                      'ok = kind.expands == "fan_out"\nbad = name != "delay"\n') == [1, 4]


CLIENTS = ("httpx", "aiosmtplib", "openai", "langchain_openai", "fastapi", "uvicorn",
           "redis", "pymongo", "arq", "requests", "langgraph")


def loaded_after(statement: str) -> list[str]:
    code = (f"import sys\n{statement}\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({CLIENTS!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    return list(ast.literal_eval(result.stdout.strip()))


def test_validating_loads_no_client_and_no_engine() -> None:
    assert loaded_after("import flowloom.graphs, flowloom.graphs.loader, "
                        "flowloom.graphs.validate") == []


def test_compiling_loads_no_client_of_ours() -> None:
    # LangGraph itself imports httpx (its SDK) and requests (via langsmith); Flowloom's
    # own clients (SMTP, the model, Redis, MongoDB, the web stack) stay out.
    assert set(loaded_after("import flowloom.graphs.compile")) <= {
        "langgraph", "httpx", "requests"}


# The store's primitives that decide who drives a run: app/lifecycle/ alone calls them.
LIFECYCLE_PRIMITIVES = frozenset({"claim_run", "save_run_if", "request_cancel",
                                  "cancel_requested", "stale_runs", "save_run_with_events",
                                  "save_run"})
LIFECYCLE_HOMES = ("app/lifecycle/", "app/stores/")  # who uses them, who implements them


def primitive_calls(source: str) -> list[tuple[int, str]]:
    """Calls of a lifecycle primitive as a method (`store.claim_run(...)`), by any name
    of the object; `getattr(store, "claim_run")` counts too."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in LIFECYCLE_PRIMITIVES:
            found.append((node.lineno, func.attr))
        elif isinstance(func, ast.Name) and func.id == "getattr" and any(
                isinstance(arg, ast.Constant) and arg.value in LIFECYCLE_PRIMITIVES
                for arg in node.args):
            found.append((node.lineno, "getattr"))
    return sorted(found)


def test_one_module_owns_a_runs_lifecycle() -> None:
    """The CLI, the Python API, the HTTP service, the pool and the queue workers claim,
    cancel and beat through app/lifecycle/ only: the rules live in one place."""
    breaches = [f"{path.relative_to(REPO)}:{line} calls {name}"
                for layer in ("app", "nodes", "graphs")
                for path in sorted((REPO / layer).rglob("*.py"))
                if not str(path.relative_to(REPO)).startswith(LIFECYCLE_HOMES)
                for line, name in primitive_calls(path.read_text())]
    assert breaches == []


def test_the_lifecycle_check_sees_a_direct_call() -> None:
    source = ("async def f(store, s):\n    await store.claim_run('x', 'queued', 0)\n"
              "    await s.store.request_cancel('x', 'me')\n"
              "    getattr(store, 'stale_runs')\n    await claim_run(store)\n")
    assert primitive_calls(source) == [(2, "claim_run"), (3, "request_cancel"),
                                       (4, "getattr")]
