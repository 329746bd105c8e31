"""Crash tests with real processes: SIGKILL a run at several points, resume it in a new
process, and count the side effects on a local HTTP server. On SQLite and on MongoDB
(SecantusDB, a real wire-protocol server)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowloom.app.api.manager import RunManager
from flowloom.app.records import RunRecord
from flowloom.app.runner import run_sync
from flowloom.app.services import open_services
from flowloom.app.settings import load_settings
from flowloom.app.stores import open_store
from tests.servers import FlakyServer
from tests.service_fixtures import ON_EVERY_STORE
from tests.stored import events, record

pytestmark = [pytest.mark.slow, ON_EVERY_STORE]
REPEATS = 3


class Crash:
    def __init__(self, tmp_path: Path, server: FlakyServer, base: str, store_url: str) -> None:
        self.tmp = tmp_path
        self.server = server
        self.base = base
        self.store_url = store_url
        self.env = {**os.environ, "FLOWLOOM_STORE": store_url,
                    "FLOWLOOM_HTTP_ALLOW_PRIVATE": "true"}

    def cli(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "flowloom", *args], env=self.env,
                                cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def kill_when(self, doc: dict[str, Any], execution_id: str,
                  ready: Callable[[], bool], jitter_s: float = 0.0) -> None:
        path = self.tmp / f"{execution_id}.json"
        path.write_text(json.dumps(doc))
        proc = self.cli("run", str(path), "--execution-id", execution_id, "--json")
        for _ in range(6000):  # polled a bounded number of times: a hang fails, load does not
            if ready():
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.005)
        else:
            pytest.fail("kill point never reached")
        time.sleep(jitter_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def resume(self, execution_id: str, *extra: str) -> dict[str, Any]:
        # The killed process's record is still fresh: the test knows that process is gone.
        proc = self.cli("resume", execution_id, "--json", "--force", *extra)
        out, errors = proc.communicate(timeout=60)
        assert proc.returncode == 0, errors
        return dict(json.loads(out))

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        return events(self.store_url, execution_id)

    def stored_record(self, execution_id: str) -> RunRecord:
        found = record(self.store_url, execution_id)
        assert found is not None, execution_id
        return found

    def hits(self, key: str) -> list[dict[str, Any]]:
        return self.server.hits.get(key, [])

    def assert_effects(self, keys: list[str], execution_id: str) -> None:
        """Each effect once, but the one in flight at the kill: that one at most twice,
        always with one idempotency key."""
        counts = {k: len(self.hits(k)) for k in keys}
        assert all(1 <= c <= 2 for c in counts.values()), counts
        assert sum(c == 2 for c in counts.values()) <= 1, counts
        for key in keys:
            idem = {h["idempotency_key"] for h in self.hits(key)}
            assert len(idem) == 1 and idem.pop().startswith(f"{execution_id}:"), key


@pytest.fixture
def crash(tmp_path: Path, web: tuple[FlakyServer, str], store_url: str) -> Crash:
    return Crash(tmp_path, *web, store_url)


def post(node_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "http", "config": {"method": "POST", "url": url}, **extra}


def edges(*ids: str) -> list[dict[str, str]]:
    return [{"source": a, "target": b} for a, b in itertools.pairwise(ids)]


@pytest.mark.parametrize("trial", range(REPEATS))
def test_kill_inside_a_node(crash: Crash, trial: int) -> None:
    run = f"inside{trial}"
    doc = {"nodes": [post("a", f"{crash.base}/echo?key={run}a"),
                     post("b", f"{crash.base}/slow?seconds=2&key={run}b"),
                     post("c", f"{crash.base}/echo?key={run}c")], "edges": edges("a", "b", "c")}
    crash.kill_when(doc, run, lambda: bool(crash.hits(f"{run}b")))
    record = crash.resume(run)
    assert record["status"] == "succeeded"
    assert [len(crash.hits(f"{run}{k}")) for k in "abc"] == [1, 2, 1]
    crash.assert_effects([f"{run}{k}" for k in "abc"], run)


@pytest.mark.parametrize("trial", range(REPEATS))
def test_kill_between_nodes(crash: Crash, trial: int) -> None:
    run = f"between{trial}"
    ids = [f"n{i}" for i in range(6)]
    # 0.1 s a node; the kill lands in n2, or between n2 and n3, a little earlier or later
    # each trial, with three nodes still to go
    doc = {"nodes": [post(n, f"{crash.base}/slow?seconds=0.1&key={run}{n}") for n in ids],
           "edges": edges(*ids), "output": "{{ n5.status }}"}
    crash.kill_when(doc, run, lambda: bool(crash.hits(f"{run}n2")),
                    jitter_s=random.uniform(0.05, 0.15))
    record = crash.resume(run)
    assert record["status"] == "succeeded" and record["output"] == 200
    crash.assert_effects([f"{run}{n}" for n in ids], run)


@pytest.mark.parametrize("trial", range(REPEATS))
def test_kill_inside_a_foreach_with_items_in_flight(crash: Crash, trial: int) -> None:
    run = f"fe{trial}"
    body = {"nodes": [post("call", crash.base + "/slow?seconds=0.5&key=" + run +
                           "item{{ index }}")]}
    doc = {"nodes": [{"id": "each", "type": "foreach", "config": {
        "items": "range(6) | list", "max_concurrency": 3, "body": body}}],
        "output": "{{ each | map(attribute='status') | list }}"}
    keys = [f"{run}item{i}" for i in range(6)]
    shown: list[int] = []

    def second_wave_with_an_item_recorded() -> bool:
        # An item's answer frees its slot a moment before its result is stored: on a busy
        # machine the kill can land in between, and such an item is rightly sent again.
        if sum(bool(crash.hits(k)) for k in keys) < 4:
            return False
        states = crash.stored_record(run).node_states
        shown[:] = [i for i in range(6) if f"each[{i}].call" in states
                    and states[f"each[{i}].call"].status == "succeeded"]
        return bool(shown)

    crash.kill_when(doc, run, second_wave_with_an_item_recorded, jitter_s=0.05)
    record = crash.resume(run)
    assert record["status"] == "succeeded" and record["output"] == [200] * 6
    counts = [len(crash.hits(k)) for k in keys]
    assert [counts[i] for i in shown] == [1] * len(shown), (shown, counts)  # never again
    assert all(1 <= c <= 2 for c in counts), counts
    for key in keys:
        assert len({h["idempotency_key"] for h in crash.hits(key)}) == 1


def test_items_the_record_showed_finished_are_never_sent_again(crash: Crash) -> None:
    # Issue 12, finding 12: 16 items, 4 at a time, killed in the third wave; items the
    # stored record showed `succeeded` 150 ms before the kill were sent again on resume.
    run = "fe16"
    body = {"nodes": [post("call", crash.base + "/slow?seconds=0.3&key=" + run +
                           "item{{ index }}")]}
    doc = {"nodes": [{"id": "each", "type": "foreach", "config": {
        "items": "range(16) | list", "max_concurrency": 4, "body": body}}],
        "output": "{{ each | map(attribute='status') | list }}"}
    keys = [f"{run}item{i}" for i in range(16)]
    shown: list[int] = []

    def third_wave_with_items_recorded() -> bool:
        if sum(bool(crash.hits(k)) for k in keys) < 9:
            return False
        states = crash.stored_record(run).node_states
        shown[:] = [i for i in range(16) if f"each[{i}].call" in states
                    and states[f"each[{i}].call"].status == "succeeded"]
        return len(shown) >= 4  # the record shows at least a wave finished

    crash.kill_when(doc, run, third_wave_with_items_recorded, jitter_s=0.15)
    record = crash.resume(run)
    assert record["status"] == "succeeded" and record["output"] == [200] * 16
    counts = [len(crash.hits(k)) for k in keys]
    assert [counts[i] for i in shown] == [1] * len(shown), (shown, counts)
    assert all(1 <= c <= 2 for c in counts), counts
    for key in keys:
        assert len({h["idempotency_key"] for h in crash.hits(key)}) == 1


@pytest.mark.parametrize("trial", range(REPEATS))
def test_kill_during_a_delay(crash: Crash, trial: int) -> None:
    run = f"delay{trial}"
    doc = {"nodes": [post("a", f"{crash.base}/echo?key={run}a"),
                     {"id": "nap", "type": "delay", "config": {"seconds": 2.5}},
                     post("c", f"{crash.base}/echo?key={run}c")], "edges": edges("a", "nap", "c")}
    crash.kill_when(doc, run, lambda: bool(crash.hits(f"{run}a")), jitter_s=1.0)
    record = crash.resume(run)
    assert record["status"] == "succeeded"
    assert [len(crash.hits(f"{run}{k}")) for k in "ac"] == [1, 1]
    nap = [e for e in crash.events(run) if e.get("node_id") == "nap"]
    assert [e["event"] for e in nap] == ["node.started", "node.started", "node.succeeded"]
    first, resumed, done = nap
    # Both attempts count from the one first start checkpointed in the killed process,
    # which came before that process's start event.
    stamp = first["first_started_at"]
    assert resumed["first_started_at"] == stamp <= first["at"]
    # Due 2.5 s after that first start; the resumed attempt waits only for what remained,
    # so it ends before a fresh 2.5 s from its own start.
    assert stamp + 2.5 <= done["at"] < resumed["at"] + 2.5


@pytest.mark.parametrize("trial", range(REPEATS))
def test_kill_while_waiting_for_approval(crash: Crash, trial: int) -> None:
    run = f"wait{trial}"
    doc = {"nodes": [post("a", f"{crash.base}/echo?key={run}a"),
                     {"id": "ok", "type": "approval", "config": {"prompt": "go?"}},
                     post("c", f"{crash.base}/echo?key={run}c")], "edges": edges("a", "ok", "c")}
    path = crash.tmp / "wait.json"
    path.write_text(json.dumps(doc))
    waiting = crash.cli("run", str(path), "--execution-id", run, "--json")
    out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 3 and json.loads(out)["status"] == "waiting"
    record = crash.resume(run, "--value", '{"go": true}')
    assert record["status"] == "succeeded"
    assert record["node_states"]["ok"]["output"] == {"go": True}
    assert [len(crash.hits(f"{run}{k}")) for k in "ac"] == [1, 1]


def test_recovery_resumes_a_parent_and_leaves_its_child_to_it(crash: Crash) -> None:
    # Both runs are orphaned by the kill. The parent's `subworkflow` node takes its child
    # over when the parent is resumed; recovering the child as well would drive it twice.
    run = "tree"
    child = {"nodes": [post("call", f"{crash.base}/slow?seconds=0.5&key={run}call"),
                       post("after", f"{crash.base}/echo?key={run}after")],
             "edges": edges("call", "after")}
    doc = {"nodes": [{"id": "sub", "type": "subworkflow", "config": {"workflow": child}}],
           "output": "{{ sub.status }}"}
    crash.kill_when(doc, run, lambda: bool(crash.hits(f"{run}call")))

    async def recover() -> tuple[set[str], list[RunRecord | None]]:
        store = open_store(load_settings(store=crash.store_url))
        try:
            async with open_services(load_settings(store=crash.store_url,
                                                   http_allow_private=True)) as services:
                manager = RunManager(store, services, workers=4, stale_after_s=0.0)
                await manager.recover()
                recovered = set(manager.tasks)
                return recovered, list(await asyncio.gather(*manager.tasks.values()))
        finally:
            await store.close()

    recovered, results = run_sync(recover())
    assert recovered == {run}
    [parent] = results
    assert parent is not None
    assert (parent.status, [e.message for e in parent.errors], parent.output) == (
        "succeeded", [], 200)
    assert crash.stored_record(f"{run}.sub").status == "succeeded"
    started = [e for e in crash.events(f"{run}.sub") if e["event"] == "run.started"]
    assert len(started) == 2  # its first start and the one takeover, by its parent
    crash.assert_effects([f"{run}call", f"{run}after"], f"{run}.sub")
