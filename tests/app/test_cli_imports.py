"""`flowloom --help` and `flowloom validate` start fast: they load no engine, no client and
no web stack (the modules each command loads, not how long it takes)."""

from __future__ import annotations

import ast
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
