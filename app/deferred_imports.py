"""Packages whose own `__init__` the `flowloom` command runs only when something reads it.

LangGraph and langchain-core import leaf modules of packages whose `__init__` loads far
more than that leaf: `langsmith.types.run_select_field` (one `Literal` alias) runs
`langsmith/types/__init__.py`, which builds ~170 generated API models, and
`langgraph_sdk.auth.types` runs `langgraph_sdk/__init__.py`, which imports its HTTP and
websocket clients. A run uses neither; together they are ~0.2 s of a `flowloom run`.

A deferred package's module is made as usual and its submodules import as usual, but its
`__init__` runs on the first read of an attribute it would define: `from pkg import X`
and `pkg.X` still work, they just pay for `__init__` then.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

DEFERRED = frozenset({"langsmith.types", "langgraph_sdk"})


class _DeferredInit(importlib.abc.Loader):
    """Wraps a package's loader: `exec_module` only arms a module `__getattr__` that runs
    the real `__init__` once, on the first missing attribute."""

    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        lock = threading.RLock()  # reentrant: `__init__` itself reads the module
        started = False
        real = self.real

        def __getattr__(name: str) -> Any:
            nonlocal started
            with lock:  # other threads wait here until `__init__` has run, once
                if not started:
                    started = True
                    try:
                        real.exec_module(module)
                    finally:
                        if module.__dict__.get("__getattr__") is __getattr__:
                            del module.__dict__["__getattr__"]
                elif module.__dict__.get("__getattr__") is __getattr__:
                    # `__init__`, running in this thread, reads a name not defined yet
                    raise AttributeError(f"module {module.__name__!r} has no attribute "
                                         f"{name!r}")
            return getattr(module, name)  # AttributeError if `__init__` defines no such name

        module.__dict__["__getattr__"] = __getattr__

    def __getattr__(self, name: str) -> Any:  # is_package, get_resource_reader, ...
        return getattr(self.real, name)


class DeferredInitFinder(importlib.abc.MetaPathFinder):
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return None  # not a plain package on the path: import it the usual way
        spec.loader = _DeferredInit(spec.loader)
        return spec


def defer_package_inits(names: frozenset[str] = DEFERRED) -> None:
    """Install the finder (once) ahead of the usual ones. Packages imported already are
    left as they are."""
    if not any(isinstance(f, DeferredInitFinder) and f.names == names for f in sys.meta_path):
        sys.meta_path.insert(0, DeferredInitFinder(names))
