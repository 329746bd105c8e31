"""Who runs a run: a store hiccup never replaces a run's outcome, and a run with a live
owner is not taken over from the CLI. (A shared model call outliving one waiter's cancel
is in test_llm_cache.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flowloom.app.records import RunRecord
from flowloom.app.runner import execute_workflow_async
from flowloom.app.settings import Settings
from flowloom.app.stores.errors import StoreError
from flowloom.app.stores.sqlite import SqliteStore
from tests.conftest import chain, delay, t
from tests.servers import FlakyServer
from tests.service_fixtures import ON_EVERY_STORE
from tests.stored import checkpoint_rows, events


class HiccupStore(SqliteStore):
    """A real SQLite store whose run writes fail a few times mid-run (heartbeats)."""

    def __init__(self, path: Path, fail_calls: set[int]) -> None:
        super().__init__(path)
        self.fail_calls = fail_calls
        self.calls = 0

    async def save_run_with_events(self, record: RunRecord, events: Sequence[Mapping[str, Any]],
                                   fence: datetime | None = None) -> None:
        self.calls += 1
        if self.calls in self.fail_calls:
            raise StoreError("injected: the store is briefly unavailable")
        await super().save_run_with_events(record, events, fence)


async def test_a_store_hiccup_while_running_never_replaces_the_outcome(
        settings: Settings, tmp_path: Path) -> None:
    store = HiccupStore(tmp_path / "hiccup.db", fail_calls={2, 3, 4})
    try:
        doc = {"nodes": [t("a", 1), delay("nap", 1.5), t("b", "done")],
               "edges": [{"source": "a", "target": "nap"}, {"source": "nap", "target": "b"}]}
        record = await execute_workflow_async(doc, settings=settings, store=store,
                                              execution_id="hiccup")
        assert record.status == "succeeded" and record.output == "done"
        assert store.calls > 4  # the injected failures happened, and writes went on
        stored = await store.get_run("hiccup")
        assert stored is not None and stored.status == "succeeded"
        events = await store.list_events("hiccup")
        # No event was lost with the failed writes: numbered without a gap, in order.
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["event"] == "run.finished"
        assert [e["node_id"] for e in events if e["event"] == "node.succeeded"] == [
            "a", "nap", "b"]
    finally:
        await store.close()


@pytest.mark.slow
def test_the_cli_refuses_to_take_over_a_run_with_a_live_owner(tmp_path: Path) -> None:
    env = {**os.environ, "FLOWLOOM_STORE": f"sqlite:///{tmp_path / 'live.db'}"}
    doc = tmp_path / "long.json"
    doc.write_text(json.dumps({"nodes": [t("a", 1), delay("nap", 60)],
                               "edges": [{"source": "a", "target": "nap"}]}))
    owner = subprocess.Popen([sys.executable, "-m", "flowloom", "run", str(doc),
                              "--execution-id", "live", "--json"], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until the owner is inside its delay
            shown = subprocess.run([sys.executable, "-m", "flowloom", "runs", "show", "live",
                                    "--json"], env=env, cwd=tmp_path, capture_output=True,
                                   text=True, timeout=60)
            if shown.returncode == 0 and json.loads(shown.stdout)["node_states"].get(
                    "nap", {}).get("status") == "running":
                break
            assert owner.poll() is None, owner.communicate()
            time.sleep(0.1)
        else:
            pytest.fail("the owner never reached its delay")
        taken = subprocess.run([sys.executable, "-m", "flowloom", "resume", "live"], env=env,
                               cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert taken.returncode == 1
        # One line naming the owner, how long its lease has left, and the way past it.
        assert taken.stderr.count("\n") == 1, taken.stderr
        owner_name = f"{socket.gethostname()}:{owner.pid}"
        assert f"is running in a live process ({owner_name}): its lease has " in taken.stderr
        left = re.search(r"its lease has (\d+\.\d) s left", taken.stderr)
        assert left is not None and 0 < float(left.group(1)) <= 10  # FLOWLOOM_STALE_AFTER_S
        assert "--force" in taken.stderr
        events = subprocess.run([sys.executable, "-m", "flowloom", "runs", "show", "live",
                                 "--json"], env=env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)
        assert json.loads(events.stdout)["status"] == "running"
        assert owner.poll() is None  # the owner goes on, alone
    finally:
        owner.kill()
        owner.wait(timeout=10)


async def test_cancel_and_claim_race_never_both_win(settings: Settings, store: SqliteStore
                                                    ) -> None:
    from flowloom.app.runner import cancel_workflow, prepare_run
    doc = {"nodes": [t("a", 1)]}
    outcomes = []
    for trial in range(100):
        _, queued = await prepare_run(store, doc, execution_id=f"race{trial}",
                                      status="queued")
        seen = queued.updated_at or queued.created_at
        claimed, _ = await asyncio.gather(
            store.claim_run(queued.execution_id, "queued", seen),
            cancel_workflow(queued.execution_id, by="alice", store=store, settings=settings))
        stored = await store.get_run(queued.execution_id)
        assert stored is not None
        flagged = await store.cancel_requested(queued.execution_id)
        # Either the claim won (running, and its owner is asked to stop) or the cancel
        # did (cancelled, never started): never a run both cancelled and started.
        assert (claimed, stored.status) in ((True, "running"), (False, "cancelled")), trial
        assert flagged == "alice"
        outcomes.append(claimed)
    assert len(outcomes) == 100


async def test_a_cancelled_orphan_is_not_run_again_by_recovery(settings: Settings,
                                                               store: SqliteStore) -> None:
    from flowloom.app.runner import prepare_run, resume_workflow
    await prepare_run(store, {"nodes": [t("a", 1)]}, execution_id="orphan")
    await store.request_cancel("orphan", "alice")  # its process died before noticing
    done = await resume_workflow("orphan", store=store, settings=settings, force=True)
    assert (done.status, done.cancelled_by) == ("cancelled", "alice")
    assert await store.list_events("orphan") == []  # nothing ran


# An owner whose watcher never writes (its record is written only by its nodes' lease
# checks): the first write it tries on waking is then the finished node's checkpoint
# write, which the saver's fence alone must refuse. With the watcher on, the overdue
# watcher usually notices the takeover first.
QUIET_WATCHER = """
import asyncio
import flowloom.app.lifecycle.live as live
from flowloom.app.cli import main

async def watch_nothing(self, run_task):
    await asyncio.wait({run_task})

live.LiveRecord.watch = watch_nothing
main()
"""


@pytest.mark.slow
@ON_EVERY_STORE
@pytest.mark.parametrize("watcher", ["on", "quiet"])
def test_a_stopped_owner_that_wakes_after_a_takeover_writes_nothing_more(
        tmp_path: Path, web: tuple[FlakyServer, str], store_url: str, watcher: str) -> None:
    import signal
    server, base = web
    env = {**os.environ, "FLOWLOOM_STORE": store_url,
           "FLOWLOOM_HTTP_ALLOW_PRIVATE": "true", "FLOWLOOM_STALE_AFTER_S": "2"}
    ids = [f"n{i}" for i in range(6)]
    doc = tmp_path / "fence.json"
    doc.write_text(json.dumps({
        "nodes": [{"id": n, "type": "http", "config": {
            "method": "POST", "url": f"{base}/slow?seconds=0.3&key=fence{n}"}} for n in ids],
        "edges": chain(*ids)}))

    def cli(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "flowloom", *args], env=env,
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def hits(n: str) -> list[dict[str, Any]]:
        return server.hits.get(f"fence{n}", [])

    def stored() -> tuple[dict[str, int], list[dict[str, Any]], dict[str, Any]]:
        shown = subprocess.run([sys.executable, "-m", "flowloom", "runs", "show", "fence",
                                "--json"], env=env, cwd=tmp_path, capture_output=True,
                               text=True, timeout=60)
        return (checkpoint_rows(store_url, "fence"), events(store_url, "fence"),
                json.loads(shown.stdout))

    start = ["-c", QUIET_WATCHER] if watcher == "quiet" else ["-m", "flowloom"]
    owner = subprocess.Popen([sys.executable, *start, "run", str(doc), "--execution-id",
                              "fence", "--json"], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(6000):
            if hits("n1"):
                break
            assert owner.poll() is None, owner.communicate()
            time.sleep(0.01)
        else:
            pytest.fail("the owner never sent n1")
        owner.send_signal(signal.SIGSTOP)  # the owner's loop stalls past its lease
        for _ in range(120):  # until another process may take the run over
            taker = cli("resume", "fence", "--json")
            out, errors = taker.communicate(timeout=60)
            if taker.returncode == 0:
                break
            assert "is running in a live process" in errors
            time.sleep(0.5)
        else:
            pytest.fail("the stopped owner's run never went stale")
        assert json.loads(out)["status"] == "succeeded"
        taken = stored()
        owner.send_signal(signal.SIGCONT)
        owner.communicate(timeout=60)
    finally:
        owner.kill()
        owner.wait(timeout=10)
    counts = [len(hits(n)) for n in ids]
    # The node in flight at the stop (n1, unless the machine was slow to stop it) was
    # sent by both owners under one key; every other node once: the woken owner started
    # nothing more.
    twice = [n for n, c in zip(ids, counts, strict=True) if c == 2]
    assert len(twice) == 1 and sorted(counts) == [1, 1, 1, 1, 1, 2], counts
    assert {h["idempotency_key"] for h in hits(twice[0])} == {f"fence:{twice[0]}"}
    # The woken owner wrote nothing: no checkpoint, no task write, no event, no record.
    rows, log, record = stored()
    assert rows["checkpoints"] > 0 and rows["writes"] > 0
    assert rows == taken[0]
    assert [(e["seq"], e["event"], e.get("node_id")) for e in log] == [
        (e["seq"], e["event"], e.get("node_id")) for e in taken[1]]
    assert (record["status"], record["updated_at"]) == ("succeeded", taken[2]["updated_at"])
    assert [e["event"] for e in log].count("run.started") == 2
