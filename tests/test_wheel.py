"""The wheel installs one name, `flowloom`, and lives beside a project that has its own
`app`, `graphs` and `nodes` packages (as most FastAPI projects do)."""

from __future__ import annotations

import json
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    return next(out.glob("flowloom-*.whl"))


def test_the_wheel_holds_only_the_flowloom_package(wheel: Path) -> None:
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"flowloom", wheel.name.split("-py")[0] + ".dist-info"}
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"flowloom/__init__.py", "flowloom/app/runner.py", "flowloom/graphs/compile.py",
            "flowloom/nodes/registry.py", "flowloom/app/ui/routes.py",
            "flowloom/app/ui/templates/shell.html", "flowloom/app/ui/static/app.js",
            "flowloom/app/ui/static/app.css"} <= names


HELLO_ADA = {"greeting": "Hello, Ada!", "length": 3}
USER_CODE = """
import json, sys
import app, graphs, nodes
from flowloom import run_workflow
record = run_workflow("hello.json", inputs={"name": "Ada"})
print(json.dumps({"mine": [app.WHO, graphs.WHO, nodes.WHO], "status": record.status,
                  "output": record.output, "flowloom": __import__("flowloom").__file__}))
"""


@pytest.fixture(scope="module")
def project(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fresh virtualenv with only the wheel installed (its dependencies are borrowed
    from this environment's site-packages), and a user's project beside it."""
    root = tmp_path_factory.mktemp("user")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    purelib = next((venv / "lib").glob("python3*/site-packages"))
    # A plain path line: the borrowed folder's own .pth files (our editable install) are
    # not run, so `flowloom` can only come from the wheel.
    (purelib / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    user = root / "project"
    for name in ("app", "graphs", "nodes"):
        (user / name).mkdir(parents=True)
        (user / name / "__init__.py").write_text(f"WHO = 'user {name}'\n")
    (user / "hello.json").write_bytes((REPO / "examples" / "hello.json").read_bytes())
    (user / "main.py").write_text(USER_CODE)
    return venv, user


def test_the_users_packages_and_flowloom_both_import_and_run(project: tuple[Path, Path]) -> None:
    venv, user = project
    result = subprocess.run([str(venv / "bin" / "python"), "main.py"], cwd=user,
                            capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(user)})
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["mine"] == ["user app", "user graphs", "user nodes"]
    assert seen["status"] == "succeeded"
    assert seen["output"] == HELLO_ADA
    assert seen["flowloom"].startswith(str(venv))


def test_the_flowloom_command_runs_inside_the_users_project(project: tuple[Path, Path]) -> None:
    venv, user = project
    result = subprocess.run([str(venv / "bin" / "flowloom"), "run", "hello.json", "--json",
                             "--input", "name=Ada"], cwd=user, capture_output=True,
                            text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(user)})
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["status"], record["output"]) == ("succeeded", HELLO_ADA)
