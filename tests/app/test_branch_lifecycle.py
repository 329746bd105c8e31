"""Everything a run does keeps working inside branches that run apart: failures and
`error` edges, smart retry, cancel, loops inside branches and branches inside loops.
Asserted by counts and the order of events, never by the clock."""

from __future__ import annotations

import asyncio
from typing import Any

from flowloom.app.runner import cancel_workflow, resume_workflow
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.nodes.services import Services
from tests.conftest import GatedSleep, Runner, chain, delay, t, wait_until
from tests.servers import FlakyServer
from tests.service_fixtures import ServiceRunner


def http(node_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "http", "config": {"url": url, "method": "POST"}, **extra}


def join_any(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "join", "config": {"mode": "any"}}


async def test_a_failed_branch_resumes_only_what_failed(
        run_with: ServiceRunner, web: tuple[FlakyServer, str], store: SqliteStore) -> None:
    server, base = web
    nodes = [t("start", 1), http("a1", f"{base}/echo?key=a1"),
             http("c", f"{base}/flaky?key=c&fail=1", retry={"max_attempts": 1}),
             http("d", f"{base}/echo?key=d"), delay("bd", 0.2), http("b2", f"{base}/echo?key=b2"),
             {"id": "j", "type": "join"}]
    edges = [*chain("start", "a1", "c", "d", "j"), *chain("start", "bd", "b2", "j")]
    failed = await run_with({"nodes": nodes, "edges": edges}, execution_id="branch-smart")
    assert failed.status == "failed" and failed.errors[0].node_id == "c"
    resumed = await resume_workflow("branch-smart", store=store, services=run_with.services)
    assert resumed.status == "succeeded", resumed.errors
    assert {k: len(server.hits[k]) for k in ("a1", "c", "d")} == {"a1": 1, "c": 2, "d": 1}
    # b2 was sent once, or, if the failure cut it off in flight, again under one key.
    assert 1 <= len(server.hits["b2"]) <= 2
    assert {h["idempotency_key"] for h in server.hits["b2"]} == {"branch-smart:b2"}
    assert sorted(resumed.node_states["j"].output) == ["b2", "d"]


async def test_cancel_reaches_every_branch_and_race(run: Runner, store: SqliteStore) -> None:
    doc = {"nodes": [t("start", 1), delay("one", 30), delay("two", 30), join_any("first"),
                     t("after", 1), delay("three", 30), t("three_done", 3)],
           "edges": [*chain("start", "one", "first", "after"), *chain("start", "two", "first"),
                     *chain("start", "three", "three_done")]}
    sleep = GatedSleep()  # never opened: the delays end only by being cancelled
    services = Services(clock=lambda: 1000.0, sleep=sleep)
    task = asyncio.create_task(run(doc, execution_id="branch-cancel", services=services))

    async def all_waiting() -> bool:
        return sleep.asked == [30, 30, 30]

    await wait_until(all_waiting, "the three delays to wait")
    await cancel_workflow("branch-cancel", by="carol", store=store)
    record = await asyncio.wait_for(task, 60)
    assert record.status == "cancelled"
    assert {n: record.node_states[n].status for n in ("one", "two", "three", "first",
                                                      "after", "three_done")} == dict.fromkeys(
        ("one", "two", "three", "first", "after", "three_done"), "cancelled")
    started = run.order("node.started")
    assert sorted(started) == ["one", "start", "three", "two"]


async def test_error_edges_and_on_error_work_inside_branches(run: Runner) -> None:
    bad = t("bad", "{{ 1 // 0 }}")
    shrug = t("shrug", "{{ 1 // 0 }}", on_error="continue")
    doc = {"nodes": [t("start", 1), delay("wait", 0.01), bad, t("handler", "handled"),
                     t("ok", "never"), delay("wait2", 0.01), shrug, t("after_shrug", "went on")],
           "edges": [*chain("start", "wait", "bad", "ok"),
                     {"source": "bad", "target": "handler", "branch": "error"},
                     *chain("start", "wait2", "shrug", "after_shrug")]}
    record = await run(doc)
    assert record.status == "succeeded", record.errors
    states = record.node_states
    assert (states["bad"].status, states["handler"].output) == ("failed", "handled")
    assert states["ok"].status == "skipped"
    assert states["shrug"].output["error"]["type"] == "ExpressionError"
    assert states["after_shrug"].output == "went on"


async def test_a_while_in_one_branch_holds_no_other(run: Runner) -> None:
    body = {"nodes": [delay("tick", 0.05), t("count", "{{ (loop.last or 0) + 1 }}")],
            "edges": chain("tick", "count")}
    loop = {"id": "w", "type": "while", "config": {"condition": "(loop.last or 0) < 3",
                                                  "body": body}}
    doc = {"nodes": [t("start", 1), loop, t("c1", 1), t("c2", 2), t("c3", 3)],
           "edges": [*chain("start", "w"), *chain("start", "c1", "c2", "c3")]}
    record = await run(doc)
    assert record.node_states["w"].output == {"iterations": 3, "last": 3}
    succeeded = run.order("node.succeeded")
    assert succeeded.index("c3") < succeeded.index("w")


async def test_branches_inside_a_loop_body_run_apart(run: Runner) -> None:
    body = {"nodes": [t("begin", "{{ item }}"), delay("slow", 0.2), t("slow_done", "S"),
                      t("q1", 1), t("q2", 2), t("q3", "{{ item * 10 }}"),
                      {"id": "j", "type": "join"}],
            "edges": [*chain("begin", "slow", "slow_done", "j"),
                      *chain("begin", "q1", "q2", "q3", "j")]}
    doc = {"nodes": [{"id": "each", "type": "foreach",
                      "config": {"items": "[1, 2]", "max_concurrency": 1, "body": body}}]}
    record = await run(doc)
    assert record.status == "succeeded", record.errors
    assert [o["q3"] for o in record.node_states["each"].output] == [10, 20]
    # In each item, the quick chain finished while the delay beside it still waited.
    kinds = [(e["event"], e["node_id"]) for e in run.events if "node_id" in e]
    for i in (0, 1):
        assert kinds.index(("node.succeeded", f"each[{i}].q3")) < kinds.index(
            ("node.succeeded", f"each[{i}].slow"))
