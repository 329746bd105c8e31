"""`flowloom workflows list / push / show`, as real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

from tests.app.conftest import Cli
from tests.conftest import REPO

HELLO = json.loads((REPO / "examples" / "hello.json").read_text())


def test_push_stores_versions_and_identical_content_answers_the_existing_one(
        cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "hello.json").write_text(json.dumps(HELLO))
    first = cli("workflows", "push", "hello.json", "--json")
    assert (first.returncode, json.loads(first.stdout)) == (
        0, {"id": "hello", "version": 1, "new": True})
    again = cli("workflows", "push", "hello.json")
    assert (again.returncode, again.stdout) == (
        0, "workflow hello version 1 unchanged (identical content)\n")
    (tmp_path / "hello.json").write_text(json.dumps({**HELLO, "name": "Hello again"}))
    changed = cli("workflows", "push", "hello.json")
    assert (changed.returncode, changed.stdout) == (0, "stored workflow hello version 2\n")
    listed = json.loads(cli("workflows", "list", "--json").stdout)
    assert [(w["id"], w["name"], w["version"]) for w in listed] == [
        ("hello", "Hello again", 2)]
    old = json.loads(cli("workflows", "show", "hello", "--version", "1", "--json").stdout)
    assert (old["name"], old["nodes"][1]["id"]) == ("Hello", "greet")
    shown = cli("workflows", "show", "hello")
    assert shown.stdout.splitlines()[1:3] == ["name: Hello again",
                                              "description: Greets someone: the smallest "
                                              "useful workflow."]
    assert shown.stdout.splitlines()[-2:] == ["start -> greet", "greet -> end"]
    missing = cli("workflows", "show", "hello", "--version", "3")
    assert (missing.returncode, missing.stderr) == (
        1, "flowloom: no workflow `hello` version 3\n")


def test_push_without_id_uses_the_id_run_gives_the_same_content(cli: Cli,
                                                                 tmp_path: Path) -> None:
    doc = {key: value for key, value in HELLO.items() if key != "id"}
    (tmp_path / "anon.json").write_text(json.dumps(doc))
    pushed = json.loads(cli("workflows", "push", "anon.json", "--json").stdout)
    assert pushed["id"].startswith("inline-") and pushed["version"] == 1
    ran = json.loads(cli("run", "anon.json", "--json").stdout)
    assert (ran["workflow_id"], ran["workflow_version"]) == (pushed["id"], 1)


def test_push_refuses_an_invalid_or_unreadable_document(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "invalid.json").write_text('{"nodes": [{"id": "a", "type": "nah"}]}')
    invalid = cli("workflows", "push", "invalid.json")
    assert invalid.returncode == 1
    assert invalid.stderr.splitlines()[0].startswith("invalid.json: $.nodes[0].type: ")
    (tmp_path / "broken.json").write_text("{nope")
    assert cli("workflows", "push", "broken.json").returncode == 2
    assert json.loads(cli("workflows", "list", "--json").stdout) == []
