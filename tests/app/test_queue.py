"""Scale-out: the API enqueues on arq (real Redis), `flowloom worker` processes run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from flowloom.app.api.main import create_app
from flowloom.app.records import RunRecord
from flowloom.app.settings import load_settings
from tests.conftest import chain, delay, t

pytestmark = pytest.mark.slow


class Workers:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, log: Path | None = None) -> subprocess.Popen[bytes]:
        """A worker process; its log lines (stderr) go to `log` when given."""
        stderr = log.open("wb") if log is not None else subprocess.DEVNULL
        proc = subprocess.Popen([sys.executable, "-m", "flowloom", "worker"], env=self.env,
                                cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=stderr)
        if log is not None:
            stderr.close()  # type: ignore[union-attr]  # the child holds its own copy
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def queue_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return {"store": f"sqlite:///{tmp_path / 'queue.db'}", "queue_url": redis_url,
            "stale_after_s": "3"}


@pytest.fixture
def workers(queue_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    env = {**os.environ, **{f"FLOWLOOM_{k.upper()}": v for k, v in queue_env.items()}}
    pool = Workers(env, tmp_path)
    yield pool
    pool.stop()


@pytest.fixture
async def api(queue_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(load_settings(**queue_env))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def until(api: httpx.AsyncClient, run_id: str, status: str, seconds: float = 30) -> dict:
    for _ in range(int(seconds / 0.1)):
        record = (await api.get(f"/executions/{run_id}")).json()
        if record["status"] == status:
            return dict(record)
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} is {record['status']}, not {status}")


async def test_worker_processes_run_queued_executions(api: httpx.AsyncClient,
                                                      workers: Workers) -> None:
    workers.start()
    health = (await api.get("/health")).json()
    assert health["services"]["queue"] == {"ok": True, "mode": "arq"}
    doc = {"nodes": [t("a", "{{ inputs.n * 2 }}"), t("b", "{{ a + 1 }}")],
           "edges": chain("a", "b")}
    queued = await api.post("/execute", json={"workflow": doc, "inputs": {"n": 4},
                                              "mode": "async"})
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    record = await until(api, queued.json()["execution_id"], "succeeded")
    assert record["output"] == 9
    synced = await api.post("/execute", json={"workflow": doc, "inputs": {"n": 1},
                                              "wait_s": 20})
    assert synced.status_code == 200 and synced.json()["output"] == 3


async def test_a_killed_worker_s_run_is_finished_by_another(api: httpx.AsyncClient,
                                                            workers: Workers) -> None:
    first = workers.start()
    doc = {"nodes": [t("a", 1), delay("nap", 2), t("b", "{{ a + 1 }}")],
           "edges": chain("a", "nap", "b")}
    run_id = (await api.post("/execute", json={"workflow": doc, "mode": "async"})
              ).json()["execution_id"]
    napping = await until(api, run_id, "running")
    for _ in range(300):  # killed while in its delay, with `a` done
        if "nap" in napping["node_states"]:
            break
        await asyncio.sleep(0.1)
        napping = (await api.get(f"/executions/{run_id}")).json()
    assert napping["node_states"]["a"]["status"] == "succeeded"
    assert napping["node_states"]["nap"]["status"] == "running"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    workers.start()
    record = await until(api, run_id, "succeeded", seconds=40)
    assert record["output"] == 2
    assert record["node_states"]["a"]["attempts"] == 1


async def test_approval_answered_through_the_queue(api: httpx.AsyncClient,
                                                   workers: Workers) -> None:
    workers.start()
    doc = {"nodes": [{"id": "ok", "type": "approval", "config": {"prompt": "go?"}},
                     t("after", "{{ ok }}")], "edges": chain("ok", "after")}
    run_id = (await api.post("/execute", json={"workflow": doc, "mode": "async"})
              ).json()["execution_id"]
    await until(api, run_id, "waiting")
    resumed = await api.post(f"/executions/{run_id}/resume", json={"value": "yes",
                                                                   "wait_s": 20})
    assert resumed.status_code == 200 and resumed.json()["output"] == "yes"


async def test_an_interrupted_run_resumed_over_http_is_taken_over_by_a_worker(
        api: httpx.AsyncClient, workers: Workers, queue_env: dict[str, str]) -> None:
    from datetime import timedelta

    from flowloom.app.runner import prepare_run
    from flowloom.app.stores import open_store
    store = open_store(load_settings(**queue_env))  # as the process that stopped
    _, stopped = await prepare_run(store, {"nodes": [t("a", 41), t("b", "{{ a + 1 }}")],
                                           "edges": chain("a", "b")}, status="running")
    stopped.updated_at = stopped.created_at - timedelta(seconds=60)  # no heartbeat since
    await store.save_run(stopped)
    await store.close()
    workers.start()
    resumed = await api.post(f"/executions/{stopped.execution_id}/resume",
                             json={"wait_s": 20})
    assert resumed.status_code == 200 and resumed.json()["output"] == 42
    record = await until(api, stopped.execution_id, "succeeded", seconds=30)
    assert record["node_states"]["a"]["attempts"] == 1


async def test_worker_logs_json_lines_with_the_request_s_correlation_id_child_runs_too(
        api: httpx.AsyncClient, workers: Workers, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    worker = workers.start(log)
    child = {"nodes": [t("inner", "{{ inputs.n * 10 }}")]}
    doc = {"nodes": [t("a", 4), {"id": "sub", "type": "subworkflow",
                                 "config": {"workflow": child, "inputs": {"n": "{{ a }}"}}}],
           "edges": chain("a", "sub")}
    queued = await api.post("/execute", json={"workflow": doc, "mode": "async"},
                            headers={"X-Correlation-ID": "trace-q"})
    run_id = queued.json()["execution_id"]
    assert (await until(api, run_id, "succeeded"))["output"] == 40
    kid = (await api.get(f"/executions/{run_id}.sub")).json()
    assert kid["correlation_id"] == "trace-q"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # every line JSON
    runs = [(x["message"].split()[1], x["message"].split()[-1], x["correlation_id"])
            for x in lines if x["logger"] == "flowloom.run"]
    assert runs == [(run_id, "started", "trace-q"), (f"{run_id}.sub", "started", "trace-q"),
                    (f"{run_id}.sub", "succeeded", "trace-q"),
                    (run_id, "succeeded", "trace-q")]


async def test_a_worker_alone_deletes_finished_runs_past_retention(
        workers: Workers, queue_env: dict[str, str]) -> None:
    # A deployment may run workers with no API process: they purge too.
    from datetime import UTC, datetime, timedelta

    from flowloom.app.records import RunRecord
    from flowloom.app.stores import open_store
    store = open_store(load_settings(**queue_env))
    old = datetime.now(UTC) - timedelta(days=30)
    for run_id, status in (("old-done", "succeeded"), ("old-waiting", "waiting")):
        await store.save_run(RunRecord(execution_id=run_id, created_at=old, status=status))
    try:
        workers.env["FLOWLOOM_RETENTION_DAYS"] = "1"
        workers.start()
        for _ in range(600):  # polled a bounded number of times: only a hang trips it
            if await store.get_run("old-done") is None:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the worker never deleted the finished run")
        waiting = await store.get_run("old-waiting")
        assert waiting is not None and waiting.status == "waiting"
    finally:
        await store.close()


async def test_queue_recovery_enqueues_a_parent_and_never_a_child_it_takes_over(
        redis_url: str, tmp_path: Path) -> None:
    from datetime import timedelta

    from flowloom.app.queue import QueueManager
    from flowloom.app.records import utcnow
    from flowloom.app.stores import open_store
    from flowloom.nodes.services import Services

    old = utcnow() - timedelta(seconds=60)
    store = open_store(load_settings(store=f"sqlite:///{tmp_path / 'q.db'}"))
    for execution_id, parent, status in (("top", None, "running"), ("top.sub", "top", "running"),
                                         ("ended", None, "succeeded"),
                                         ("ended.sub", "ended", "running")):
        await store.save_run(RunRecord(
            execution_id=execution_id, workflow_id="w", workflow_version=1, status=status,
            created_at=old, updated_at=old, parent_execution_id=parent))
    manager = QueueManager(store, Services(), redis_url, stale_after_s=0.0)
    await manager.connect()
    try:
        await manager.recover()
        assert manager.pool is not None
        jobs = await manager.pool.queued_jobs()
        assert sorted(job.args[0] for job in jobs) == ["top"]
    finally:
        await manager.close()
        await store.close()
    stored = await open_and_read(tmp_path / "q.db", "ended.sub")
    assert (stored.status, stored.cancelled_by) == ("cancelled", "parent ended succeeded")


async def open_and_read(path: Path, execution_id: str) -> RunRecord:
    from flowloom.app.stores import open_store
    store = open_store(load_settings(store=f"sqlite:///{path}"))
    try:
        record = await store.get_run(execution_id)
        assert record is not None
        return record
    finally:
        await store.close()
