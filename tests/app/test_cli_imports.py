"""`flowloom --help` and `flowloom validate` start fast: they load no engine, no client and
no web stack (the modules each command loads, not how long it takes)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HEAVY = ("langgraph", "langchain_core", "langchain_openai", "openai", "langsmith", "httpx",
         "aiosmtplib", "fastapi", "starlette", "uvicorn", "redis", "pymongo", "arq",
         "requests", "aiosqlite")

# Runs the CLI in this interpreter, then prints which heavy top-level modules it loaded.
PROBE = """
import runpy, sys
sys.argv = ["flowloom", *{args!r}]
try:
    runpy.run_module("flowloom", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print({{"code": code, "loaded": sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))}})
"""


def loaded_by(*args: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args), heavy=HEAVY)],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
                            check=True)
    last = result.stdout.strip().splitlines()[-1]
    return dict(ast.literal_eval(last))


@pytest.mark.parametrize("args", [["--help"], ["validate", "examples/hello.json"],
                                  ["validate", "examples/ai-triage.json"],
                                  ["graph", "examples/foreach.json"], ["runs", "--help"]])
def test_light_commands_load_no_engine_and_no_client(args: list[str]) -> None:
    assert loaded_by(*args) == {"code": 0, "loaded": []}


def test_the_probe_sees_what_running_loads(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "FLOWLOOM_STORE": f"sqlite:///{tmp_path / 'flowloom.db'}"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=["run", str(REPO / "examples/hello.json"),
                                                  "--json"], heavy=HEAVY)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=True)
    probe = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert probe["code"] == 0 and "langgraph" in probe["loaded"]
    # the model clients and Redis load only for the nodes and settings that use them
    assert {"openai", "langchain_openai", "redis", "aiosmtplib"}.isdisjoint(probe["loaded"])


# The packages whose own `__init__` a run never needs (app/deferred_imports.py), seen by a
# module only that `__init__` imports.
DEFERRED_PROBE = """
import gc, runpy, sys
sys.argv = ["flowloom", "run", {path!r}, "--json"]
try:
    runpy.run_module("flowloom", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print({{"code": code, "collecting": gc.isenabled(),
       "loaded": sorted(m for m in {watched!r} if m in sys.modules)}})
"""


def test_a_run_skips_the_package_inits_it_does_not_need(tmp_path: Path) -> None:
    watched = ["langgraph.graph", "langsmith.types.run_select_field", "langsmith.types.run",
               "langgraph_sdk.auth.types", "langgraph_sdk.client", "jsonschema"]
    document = tmp_path / "chain.json"  # no schema anywhere
    document.write_text(json.dumps({"id": "chain", "nodes": [
        {"id": "a", "type": "transform", "config": {"output": 1}},
        {"id": "b", "type": "transform", "config": {"output": "{{ outputs.a + 1 }}"}}],
        "edges": [{"source": "a", "target": "b"}]}))
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "FLOWLOOM_STORE": f"sqlite:///{tmp_path / 'flowloom.db'}"}
    result = subprocess.run(
        [sys.executable, "-c", DEFERRED_PROBE.format(path=str(document), watched=watched)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=True)
    probe = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    # the leaves LangGraph imports are there; the package inits around them did not run,
    # nor jsonschema for a workflow without schemas; collection is back on after start-up
    assert probe == {"code": 0, "collecting": True, "loaded": [
        "langgraph.graph", "langgraph_sdk.auth.types", "langsmith.types.run_select_field"]}
