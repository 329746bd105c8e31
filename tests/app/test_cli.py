"""The `flowloom` command, run as a real subprocess: exit codes, --json, clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def test_run_json_prints_exactly_one_run_record(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", str(EXAMPLES / "hello.json"), "--json", "--input", "name=Ada")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "succeeded"
    assert record["output"] == {"greeting": "Hello, Ada!", "length": 3}
    assert record["node_states"]["greet"]["status"] == "succeeded"


def test_run_human_output_and_runs_history(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", str(EXAMPLES / "branching.json"), "--inputs", '{"amount": 500}',
                 "--execution-id", "cli-run-1")
    assert result.returncode == 0, result.stderr
    assert "run cli-run-1: succeeded" in result.stdout
    assert "manual review of 500" in result.stdout
    shown = cli("runs", "show", "cli-run-1", "--json")
    assert json.loads(shown.stdout)["output"] == "manual review of 500"
    listed = json.loads(cli("runs", "list", "--json", "--workflow", "branching").stdout)
    assert [r["execution_id"] for r in listed] == ["cli-run-1"]
    missing = cli("runs", "show", "nope")
    assert missing.returncode == 1 and "no run with execution id `nope`" in missing.stderr


def test_inputs_from_file_and_typed_pairs(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in.json").write_text('{"amount": 5}')
    result = cli("run", str(EXAMPLES / "branching.json"), "--inputs", "@in.json", "--json")
    assert json.loads(result.stdout)["output"] == "auto-approved 5"
    typed = cli("run", str(EXAMPLES / "branching.json"), "--input", "amount=101", "--json")
    assert json.loads(typed.stdout)["output"] == "manual review of 101"


def test_failed_run_exits_1(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "fails.json"
    doc.write_text(json.dumps({"nodes": [{"id": "a", "type": "transform",
                                          "config": {"output": "{{ nope }}"}}]}))
    result = cli("run", str(doc), "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "failed"


@pytest.mark.parametrize(("args", "code", "message"), [
    (["run", "missing.json"], 2, "flowloom: cannot read missing.json: No such file or directory"),
    (["run", "{examples}/branching.json", "--input", "amount=oops"], 1,
     "flowloom: bad inputs: inputs.amount: 'oops' is not of type 'number'"),
    (["run", "{examples}/hello.json", "--inputs", "{bad"], 2, "flowloom: --inputs: not valid JSON"),
    (["run", "{examples}/hello.json", "--input", "novalue"], 2,
     "flowloom: --input 'novalue': expected KEY=VALUE"),
    (["run", "bad.json"], 2, "flowloom: cannot read bad.json: not valid JSON: Expecting "
                             "property name enclosed in double quotes at line 1 column 2"),
    (["run", "invalid.json"], 1, "flowloom: invalid workflow invalid.json: $.nodes[0].type"),
])
def test_bad_file_or_inputs_is_one_clean_line(cli, tmp_path: Path, args: list[str], code: int,  # type: ignore[no-untyped-def]
                                              message: str) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "invalid.json").write_text('{"nodes": [{"id": "a", "type": "nah"}]}')
    result = cli(*[a.replace("{examples}", str(EXAMPLES)) for a in args])
    assert result.returncode == code
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_validate_exit_codes_and_paths(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("validate", str(EXAMPLES / "foreach.json")).returncode == 0
    (tmp_path / "invalid.json").write_text(json.dumps({"nodes": [
        {"id": "a", "type": "nah"}, {"id": "a", "type": "start"}]}))
    result = cli("validate", "invalid.json", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert [p["path"] for p in report["problems"]] == ["$.nodes[0].type", "$.nodes[1].id"]
    assert cli("validate", "nothere.json").returncode == 2


def test_graph_prints_mermaid(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("graph", str(EXAMPLES / "branching.json"))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert "  n_check -->|true| n_review" in lines
    assert '  n_end(["end<br/><i>end</i>"])' in lines


def test_graph_nests_loop_bodies(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("graph", str(EXAMPLES / "foreach.json"))
    assert 'subgraph n_lines_body["lines body"]' in result.stdout
    assert "n_lines__subtotal --> n_lines__priced" in result.stdout


def test_bad_setting_stops_with_one_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "FLOWLOOM_STORE": "postgres://x"}
    result = subprocess.run([sys.executable, "-m", "flowloom", "run",
                             str(EXAMPLES / "hello.json")], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("flowloom: FLOWLOOM_STORE: Value error, must start with")


def test_run_shows_live_node_progress_on_a_terminal(tmp_path: Path) -> None:
    import pty
    import select

    doc = tmp_path / "slow.json"
    doc.write_text(json.dumps({"nodes": [
        {"id": "first", "type": "transform", "config": {"output": 1}},
        {"id": "napping", "type": "delay", "config": {"seconds": 1.5}}],
        "edges": [{"source": "first", "target": "napping"}]}))
    env = {**os.environ, "FLOWLOOM_STORE": f"sqlite:///{tmp_path / 'tty.db'}",
           "COLUMNS": "100", "TERM": "xterm"}
    main, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "flowloom", "run", str(doc)], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    seen = b""
    while proc.poll() is None or select.select([main], [], [], 0.2)[0]:
        if select.select([main], [], [], 0.2)[0]:
            try:
                seen += os.read(main, 65536)
            except OSError:
                break
    os.close(main)
    out, _ = proc.communicate(timeout=30)
    screen = seen.decode(errors="replace")
    assert proc.returncode == 0
    assert "napping" in screen and "running" in screen  # drawn while the delay ran
    assert "succeeded" in out.decode()  # the summary still goes to stdout
