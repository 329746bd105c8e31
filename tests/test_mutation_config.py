"""The mutation set-up in pyproject.toml names what bench/mutation.py runs, and only that."""

from __future__ import annotations

import importlib.util
import sys
import tomllib

from tests.conftest import REPO


def load_mutation_script():
    spec = importlib.util.spec_from_file_location("flowloom_bench_mutation",
                                                  REPO / "bench" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_pyproject_mutates_the_scripts_modules_against_their_tests() -> None:
    modules = load_mutation_script().MODULES
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert config["source_paths"] == ["flowloom/" + module for module in modules]
    tests = list(dict.fromkeys(test for files in modules.values() for test in files))
    assert config["pytest_add_cli_args_test_selection"] == tests


def test_every_module_and_test_file_it_names_exists() -> None:
    modules = load_mutation_script().MODULES
    missing = [path for module, tests in modules.items() for path in (module, *tests)
               if not (REPO / path).is_file()]
    assert missing == []
