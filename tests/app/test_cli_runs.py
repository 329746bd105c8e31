"""`flowloom runs`, prompts of waiting runs and `flowloom cancel`, as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from flowloom.app.stores.sqlite import SqliteStore
from tests.app.conftest import Cli
from tests.conftest import REPO, chain, delay, t

HELLO = str(REPO / "examples" / "hello.json")
SCHEMA = {"type": "object", "required": ["approved"],
          "properties": {"approved": {"type": "boolean"}}}


def approval_doc(tmp_path: Path, pause_s: float = 0.01) -> str:
    doc = {"id": "shipping", "nodes": [
        t("zeta", 7), delay("alpha", pause_s),
        {"id": "ok", "type": "approval",
         "config": {"prompt": "Ship order {{ outputs.zeta }}?", "schema": SCHEMA}}],
        "edges": chain("zeta", "alpha", "ok")}
    path = tmp_path / "shipping.json"
    path.write_text(json.dumps(doc))
    return str(path)


def prompt_lines(execution_id: str) -> list[str]:
    return ["waiting at node ok: Ship order 7?",
            f"  answer schema: {json.dumps(SCHEMA)}",
            f"  answer with: flowloom resume {execution_id} --value '<json>' --node ok"]


def at(text: str | None) -> str:
    assert text is not None
    return datetime.fromisoformat(text).isoformat(sep=" ", timespec="milliseconds")


def test_runs_list_prints_whole_ids_and_dates_when_piped(cli: Cli) -> None:
    long_id = "order-2024-11-29-" + "x" * 60
    assert cli("run", HELLO, "--execution-id", long_id).returncode == 0
    assert cli("run", HELLO, "--execution-id", "short").returncode == 0
    listed = cli("runs", "list", "--json", COLUMNS="40")
    records = json.loads(listed.stdout)
    assert [r["execution_id"] for r in records] == ["short", long_id]
    shown = json.loads(cli("runs", "show", long_id, "--json").stdout)
    assert records[1] == shown  # the full record, node states and logs included
    table = cli("runs", "list", COLUMNS="40")
    assert table.returncode == 0
    rows = [line.split() for line in table.stdout.splitlines()]
    created = [datetime.fromisoformat(r["created_at"]).isoformat(timespec="seconds")
               for r in records]
    assert rows == [["execution", "id", "workflow", "version", "status", "created"],
                    ["short", "hello", "1", "succeeded", created[0]],
                    [long_id, "hello", "1", "succeeded", created[1]]]


def test_runs_list_refuses_an_unknown_status(cli: Cli) -> None:
    result = cli("runs", "list", "--status", "bogus")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "flowloom: runs list: Invalid value for '--status': 'bogus' is not one of 'queued', "
        "'running', 'waiting', 'succeeded', 'failed', 'cancelled'."]
    assert cli("runs", "list", "--status", "waiting", "--json").stdout == "[]\n"


def test_waiting_run_prints_each_prompt_and_show_adds_node_timings(cli: Cli,
                                                                  tmp_path: Path) -> None:
    doc = approval_doc(tmp_path)
    ran = cli("run", doc, "--execution-id", "wait-1")
    assert ran.returncode == 3, ran.stderr
    assert ran.stdout.splitlines()[-3:] == prompt_lines("wait-1")
    shown = cli("runs", "show", "wait-1")
    assert shown.returncode == 0
    record = json.loads(cli("runs", "show", "wait-1", "--json").stdout)
    lines = shown.stdout.splitlines()
    assert lines[0] == "run wait-1: waiting"
    assert lines[-3:] == prompt_lines("wait-1")
    rows = [line.split() for line in lines[3:6]]
    assert [row[:3] for row in rows] == [["zeta", "succeeded", "1"], ["alpha", "succeeded", "1"],
                                         ["ok", "waiting", "1"]]
    for row, node in zip(rows[:2], ("zeta", "alpha"), strict=True):
        state = record["node_states"][node]
        assert " ".join(row[3:9]) == (f"{at(state['started_at'])} {at(state['finished_at'])} "
                                      f"{state['latency_ms']:.1f} ms")
    assert " ".join(rows[2][3:5]) == at(record["node_states"]["ok"]["started_at"])


def test_resume_of_a_run_left_waiting_prints_the_prompt_again(cli: Cli, tmp_path: Path) -> None:
    assert cli("run", approval_doc(tmp_path), "--execution-id", "wait-2").returncode == 3
    refused = cli("resume", "wait-2", "--value", '{"approved": "yes"}')
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "flowloom: answer to approval `ok` at $.approved: 'yes' is not of type 'boolean'; the "
        "run keeps waiting: flowloom resume wait-2 --value '<json>' --node ok")
    unanswered = cli("resume", "wait-2")
    assert unanswered.returncode == 1
    assert unanswered.stderr.startswith(
        "flowloom: answer to approval `ok`: no answer was given; the run keeps waiting")
    resumed = cli("resume", "wait-2", "--value", '{"approved": true}', "--node", "ok")
    assert resumed.returncode == 0, resumed.stderr
    assert "run wait-2: succeeded" in resumed.stdout


def test_cancel_records_once_then_refuses(cli: Cli, tmp_path: Path) -> None:
    assert cli("run", approval_doc(tmp_path), "--execution-id", "wait-3").returncode == 3
    cancelled = cli("cancel", "wait-3")
    assert (cancelled.returncode, cancelled.stdout) == (0, "run wait-3: cancelled\n")
    record = json.loads(cli("runs", "show", "wait-3", "--json").stdout)
    assert (record["status"], record["cancelled_by"]) == ("cancelled", "cli")
    again = cli("cancel", "wait-3")
    assert (again.returncode, again.stderr) == (
        1, "flowloom: execution `wait-3` already cancelled\n")
    unknown = cli("cancel", "nope")
    assert (unknown.returncode, unknown.stderr) == (
        1, "flowloom: no run with execution id `nope`\n")


async def _appeared(db: Path, execution_id: str) -> None:
    store = SqliteStore(db)
    try:
        for _ in range(3000):
            if await store.get_run(execution_id) is not None:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"run {execution_id} never appeared")
    finally:
        await store.close()


def test_runs_watch_follows_a_run_in_another_process_until_it_waits(
        cli: Cli, tmp_path: Path, cli_env: dict[str, str]) -> None:
    doc = approval_doc(tmp_path, pause_s=3.0)
    runner = subprocess.Popen([sys.executable, "-m", "flowloom", "run", doc,
                               "--execution-id", "live-1"], env=cli_env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        asyncio.run(_appeared(tmp_path / "cli.db", "live-1"))
        watched = cli("runs", "watch", "live-1")
    finally:
        assert runner.wait(timeout=60) == 3
    assert watched.returncode == 3, watched.stderr
    lines = watched.stdout.splitlines()
    assert lines[:6] == ["zeta running", "zeta succeeded", "alpha running",
                         "alpha succeeded", "ok running", "ok waiting"]
    assert lines[6] == "run live-1: waiting"
    assert lines[-3:] == prompt_lines("live-1")


def test_runs_watch_of_a_finished_run_replays_it(cli: Cli) -> None:
    assert cli("run", HELLO, "--execution-id", "done-1").returncode == 0
    watched = cli("runs", "watch", "done-1")
    assert watched.returncode == 0
    assert watched.stdout.splitlines()[:7] == [
        "start running", "start succeeded", "greet running", "greet succeeded",
        "end running", "end succeeded", "run done-1: succeeded"]
    missing = cli("runs", "watch", "nope")
    assert (missing.returncode, missing.stderr) == (
        1, "flowloom: no run with execution id `nope`\n")
