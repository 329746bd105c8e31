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
    assert result.stderr.startswith("flowloom: FLOWLOOM_STORE: must start with")


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


@pytest.mark.parametrize(("variable", "value", "command", "message"), [
    ("FLOWLOOM_REDIS_URL", "bogus", ["run", "{examples}/hello.json"],
     "must be an URL like redis://HOST:PORT/DB"),
    ("FLOWLOOM_QUEUE_URL", "http://x", ["worker"],
     "must be an URL like redis://HOST:PORT/DB"),
    ("FLOWLOOM_QUEUE_URL", "redis://host:port/1", ["serve"],
     "the port must be a number from 0 to 65535"),
    ("FLOWLOOM_REDIS_URL", "redis://host/one", ["runs", "list"],
     "the database (the URL's path) must be a number"),
    ("FLOWLOOM_STORE", "postgres://x", ["runs", "show", "x"],
     "must start with sqlite:/// or mongodb://"),
    ("FLOWLOOM_SMTP_URL", "mail.example.com", ["cancel", "x"],
     "must be an URL like smtp://user:pass@host:port"),
    ("FLOWLOOM_WORKERS", "many", ["resume", "x"],
     "Input should be a valid integer, unable to parse string as an integer"),
    ("FLOWLOOM_RETENTION_DAYS", "0", ["runs", "watch", "x"],
     "Input should be greater than or equal to 1"),
    ("FLOWLOOM_STALE_AFTER_S", "soon", ["workflows", "list"],
     "Input should be a valid number, unable to parse string as a number"),
])
def test_bad_setting_is_one_line_for_every_command(cli, variable: str, value: str,  # type: ignore[no-untyped-def]
                                                   command: list[str], message: str) -> None:
    result = cli(*[a.replace("{examples}", str(EXAMPLES)) for a in command], **{variable: value})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"flowloom: {variable}: {message}"]
    assert result.stdout == ""


@pytest.mark.parametrize("args", [
    ["run", "{examples}/hello.json", "--execution-id", "a b/c"],
    ["runs", "show", "a b/c"], ["resume", "a b/c"], ["cancel", "a b/c"],
    ["runs", "watch", "a b/c"]])
def test_execution_ids_outside_the_pattern_are_refused(cli, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = cli(*[a.replace("{examples}", str(EXAMPLES)) for a in args])
    assert result.returncode == 2
    where = " ".join(args[:2]) if args[0] == "runs" else args[0]
    which = "'--execution-id'" if args[0] == "run" else "'EXECUTION_ID'"
    assert result.stderr.splitlines() == [
        f"flowloom: {where}: Invalid value for {which}: 'a b/c' is not an execution id: "
        "letters, digits, _ . - [ ] (up to 512, not starting with . - [ ])"]


def test_the_execution_id_pattern_takes_made_and_child_ids() -> None:
    import re

    from flowloom.app.records import EXECUTION_ID_PATTERN
    assert [bool(re.fullmatch(EXECUTION_ID_PATTERN, i)) for i in (
        "0f3c9d2e8b7a4c1d9e6f5a4b3c2d1e0f", "run-1.each[3].sub", "cli_run.2", "a b/c", "-x",
        ".x", "x" * 513)] == [True, True, True, False, False, False, False]


def test_validate_a_file_that_is_not_json_exits_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes.json").write_text("nodes: [a, b]\n")
    result = cli("validate", "notes.json")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "flowloom: cannot read notes.json: not valid JSON: Expecting value at line 1 column 1"]
    (tmp_path / "list.json").write_text("[1]")
    listed = cli("validate", "list.json")
    assert (listed.returncode, listed.stderr) == (
        1, "flowloom: list.json: $: a workflow must be a JSON object\n")


def test_input_read_as_a_number_where_a_string_is_wanted_hints_at_quoting(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", str(EXAMPLES / "hello.json"), "--input", "name=123")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "flowloom: bad inputs: inputs.name: 123 is not of type 'string' "
        """(to pass the string, write --input name='"123"')"""]
    quoted = cli("run", str(EXAMPLES / "hello.json"), "--input", 'name="123"', "--json")
    assert json.loads(quoted.stdout)["output"] == {"greeting": "Hello, 123!", "length": 3}
    number = cli("run", str(EXAMPLES / "branching.json"), "--input", "amount=oops")
    assert "to pass the string" not in number.stderr
