from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FLOWLOOM_STORE": f"sqlite:///{tmp_path / 'cli.db'}"}


@pytest.fixture
def cli(tmp_path: Path, cli_env: dict[str, str]) -> Cli:
    """`python -m flowloom ARGS` in the test's folder, on the test's SQLite file."""
    def call(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowloom", *args], capture_output=True,
                              text=True, env={**cli_env, **env}, cwd=tmp_path, timeout=60)
    return call
