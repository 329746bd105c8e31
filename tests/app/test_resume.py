"""Resume after a failure, approvals, cancel, and the record as the run goes."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from flowloom.app.runner import (
    AnswerError,
    NotResumable,
    RunNotFound,
    cancel_workflow,
    resume_workflow,
)
from flowloom.app.settings import Settings
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.graphs import InputError
from flowloom.nodes.services import Services
from tests.conftest import GatedSleep, Runner, chain, delay, t, wait_until
from tests.servers import FlakyServer, SchemaHost
from tests.service_fixtures import ServiceRunner


def approval(node_id: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"prompt": "Approve {{ inputs.amount }}?"}
    if schema:
        config["schema"] = schema
    return {"id": node_id, "type": "approval", "config": config}


def http(node_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "http", "config": {"url": url, "method": "POST"}, **extra}


async def test_failed_run_resumes_only_failed_and_unfinished_nodes(
        run_with: ServiceRunner, web: tuple[FlakyServer, str], store: SqliteStore) -> None:
    server, base = web
    nodes = [http("a", f"{base}/echo?key=a"), http("b", f"{base}/echo?key=b"),
             http("c", f"{base}/flaky?key=c&fail=1", retry={"max_attempts": 1}),
             http("d", f"{base}/echo?key=d")]
    edges = [*chain("a", "c", "d"), *chain("b", "c")]
    failed = await run_with({"nodes": nodes, "edges": edges}, execution_id="smart")
    assert failed.status == "failed" and failed.node_states["d"].status == "failed"
    resumed = await resume_workflow("smart", store=store, services=run_with.services)
    assert resumed.status == "succeeded", resumed.errors
    assert [len(server.hits[k]) for k in "abcd"] == [1, 1, 2, 1]
    assert {k: v.status for k, v in resumed.node_states.items()} == dict.fromkeys(
        "abcd", "succeeded")
    assert resumed.errors == []
    assert (await store.get_run("smart")) == resumed


async def test_finished_run_is_not_run_again(run: Runner, store: SqliteStore) -> None:
    await run({"nodes": [t("a", 1)]}, execution_id="done")
    with pytest.raises(NotResumable, match="execution `done` already succeeded"):
        await resume_workflow("done", store=store)
    with pytest.raises(RunNotFound, match="no run with execution id `ghost`"):
        await resume_workflow("ghost", store=store)


async def test_approval_waits_then_resumes_with_the_answer(run: Runner,
                                                           store: SqliteStore) -> None:
    doc = {"nodes": [t("before", "x"), approval("ok"), t("after", "{{ ok.approved }}")],
           "edges": chain("before", "ok", "after")}
    waiting = await run(doc, {"amount": 120}, execution_id="appr")
    assert waiting.status == "waiting" and waiting.finished_at is None
    assert waiting.node_states["ok"].status == "waiting"
    [pending] = waiting.waiting_for
    assert pending["node_id"] == "ok" and pending["prompt"] == "Approve 120?"
    assert "after" not in waiting.node_states
    done = await resume_workflow("appr", {"approved": True}, store=store)
    assert done.status == "succeeded"
    assert done.output == True  # noqa: E712 - the answer's value, not truthiness
    assert done.node_states["ok"].output == {"approved": True}
    assert done.waiting_for == []
    assert [e["node_id"] for e in run.events if e["event"] == "node.started"].count(
        "before") == 1


async def test_bad_answer_is_refused_and_the_run_keeps_waiting(run: Runner,
                                                               store: SqliteStore) -> None:
    schema = {"type": "object", "required": ["approved"],
              "properties": {"approved": {"type": "boolean"}}}
    await run({"nodes": [approval("ok", schema)]}, {"amount": 1}, execution_id="strict")
    with pytest.raises(InputError) as info:
        await resume_workflow("strict", {"approved": "yes"}, store=store)
    assert str(info.value) == ("answer to approval `ok` at $.approved: 'yes' is not of type "
                               "'boolean'")
    assert info.value.path == "$.approved"
    still = await store.get_run("strict")
    assert still is not None and still.status == "waiting"
    with pytest.raises(AnswerError) as missing:
        await resume_workflow("strict", store=store)
    assert str(missing.value) == "answer to approval `ok`: no answer was given"
    done = await resume_workflow("strict", {"approved": False}, store=store)
    assert done.status == "succeeded" and done.output == {"approved": False}


async def test_two_answers_at_once_resume_the_run_once(
        run_with: ServiceRunner, store: SqliteStore, web: tuple[FlakyServer, str]) -> None:
    server, base = web
    doc = {"nodes": [approval("ok"), http("notify", f"{base}/echo?key=notify")],
           "edges": chain("ok", "notify")}
    await run_with(doc, {"amount": 5}, execution_id="twice")
    results = await asyncio.gather(*(
        resume_workflow("twice", {"approved": True}, store=store, services=run_with.services)
        for _ in range(2)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, NotResumable)]
    done = [r for r in results if not isinstance(r, BaseException)]
    # Refused as claimed by the other ("another request") or, read after it, as running.
    assert len(refused) == 1 and re.search("another request|is running", str(refused[0]))
    assert len(done) == 1 and done[0].status == "succeeded"
    assert len(server.hits["notify"]) == 1  # the side effect after the approval ran once


async def test_several_approvals_are_answered_by_node_id(run: Runner,
                                                         store: SqliteStore) -> None:
    doc = {"nodes": [approval("legal"), approval("finance"),
                     {"id": "j", "type": "join"}],
           "edges": [*chain("legal", "j"), *chain("finance", "j")]}
    waiting = await run(doc, {"amount": 5}, execution_id="two")
    assert sorted(p["node_id"] for p in waiting.waiting_for) == ["finance", "legal"]
    with pytest.raises(NotResumable, match="several approvals"):
        await resume_workflow("two", "yes", store=store)
    half = await resume_workflow("two", "legal ok", node_id="legal", store=store)
    assert half.status == "waiting"
    assert [p["node_id"] for p in half.waiting_for] == ["finance"]
    done = await resume_workflow("two", "finance ok", node_id="finance", store=store)
    assert done.output == {"legal": "legal ok", "finance": "finance ok"}


async def test_cancel_a_waiting_run(run: Runner, store: SqliteStore) -> None:
    await run({"nodes": [approval("ok")]}, {"amount": 1}, execution_id="cw")
    cancelled = await cancel_workflow("cw", by="alice", store=store)
    assert cancelled.status == "cancelled" and cancelled.cancelled_by == "alice"
    assert cancelled.node_states["ok"].status == "cancelled"
    with pytest.raises(NotResumable, match="already cancelled"):
        await resume_workflow("cw", "late", store=store)


async def test_cancel_a_running_run_stops_it_quickly(run: Runner, store: SqliteStore) -> None:
    doc = {"nodes": [delay("long", 30), t("after", 1)], "edges": chain("long", "after")}
    sleep = GatedSleep()  # never opened: `long` can only end by being cancelled
    services = Services(clock=lambda: 1000.0, sleep=sleep)
    task = asyncio.create_task(run(doc, execution_id="cr", services=services))

    async def waiting() -> bool:
        return sleep.asked == [30]

    await wait_until(waiting, "`long` to start waiting")
    await cancel_workflow("cr", by="bob", store=store)
    record = await asyncio.wait_for(task, 60)
    assert record.status == "cancelled" and record.cancelled_by == "bob"
    assert record.cancelled_at is not None
    assert record.node_states["long"].status == "cancelled"
    assert record.node_states["after"].status == "cancelled"
    assert "node.started" not in [e["event"] for e in run.events
                                  if e.get("node_id") == "after"]


async def test_record_and_event_log_are_written_as_the_run_goes(
        run: Runner, store: SqliteStore) -> None:
    doc = {"nodes": [t("a", 1), delay("nap", 1.0), t("c", 3)], "edges": chain("a", "nap", "c")}
    sleep = GatedSleep()
    task = asyncio.create_task(run(doc, execution_id="live", services=Services(sleep=sleep)))

    async def napping() -> bool:
        record = await store.get_run("live")
        return record is not None and "nap" in record.node_states

    await wait_until(napping, "`nap` in the stored record")
    midway = await store.get_run("live")
    assert midway is not None and midway.status == "running"
    assert midway.node_states["a"].status == "succeeded"
    assert midway.node_states["nap"].status == "running"
    assert "c" not in midway.node_states
    sleep.gate.set()
    await task
    events = await store.list_events("live")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [(e["event"], e.get("node_id")) for e in events]
    assert kinds[0] == ("run.started", None) and kinds[-1] == ("run.finished", None)
    assert kinds.index(("node.succeeded", "a")) < kinds.index(("node.started", "c"))
    assert await store.list_events("live", after=len(events) - 1) == events[-1:]


async def test_resumed_delay_waits_only_for_what_remains(run: Runner, store: SqliteStore,
                                                         settings: Settings) -> None:
    doc = {"nodes": [delay("nap", 1.5), t("after", "done")], "edges": chain("nap", "after")}
    sleep = GatedSleep()
    first = Services(clock=lambda: 1000.0, sleep=sleep)
    task = asyncio.create_task(run(doc, execution_id="napper", services=first))

    async def napping() -> bool:
        return sleep.asked == [1.5]

    await wait_until(napping, "`nap` to start waiting")
    task.cancel()  # as if the process stopped while waiting
    with pytest.raises(asyncio.CancelledError):
        await task
    sleep.gate.set()
    later = Services(clock=lambda: 1001.0, sleep=sleep)  # a second after `nap` first started
    record = await resume_workflow("napper", store=store, services=later,
                                   force=True)  # its "process" stopped
    assert record.output == "done"
    assert sleep.asked == [1.5, 0.5]  # only what remained


async def test_subworkflow_runs_a_linked_child(run: Runner, store: SqliteStore) -> None:
    child = {"id": "child", "nodes": [t("double", "{{ inputs.n * 2 }}")]}
    await store.put_workflow("child", child)
    doc = {"nodes": [{"id": "sub", "type": "subworkflow",
                      "config": {"workflow_id": "child", "inputs": {"n": "{{ inputs.n }}"}}},
                     {"id": "inline", "type": "subworkflow", "config": {
                         "workflow": {"nodes": [t("x", "{{ inputs.v }}!")]},
                         "inputs": {"v": "{{ sub }}"}}}],
           "edges": chain("sub", "inline")}
    record = await run(doc, {"n": 21}, execution_id="parent")
    assert record.output == "42!"
    child_id = record.node_states["sub"].child_execution_id
    assert child_id == "parent.sub"
    child_record = await store.get_run(child_id)
    assert child_record is not None and child_record.parent_execution_id == "parent"
    assert child_record.workflow_id == "child" and child_record.output == 42


async def test_failed_child_fails_the_node_and_resumes_with_the_parent(
        run_with: ServiceRunner, web: tuple[FlakyServer, str], store: SqliteStore) -> None:
    server, base = web
    child = {"nodes": [http("call", f"{base}/flaky?key=child&fail=1",
                            retry={"max_attempts": 1})]}
    doc = {"nodes": [{"id": "sub", "type": "subworkflow",
                      "config": {"workflow": child}}]}
    failed = await run_with(doc, execution_id="p2")
    assert failed.status == "failed"
    assert "child run `p2.sub` failed" in failed.errors[0].message
    resumed = await resume_workflow("p2", store=store, services=run_with.services)
    assert resumed.status == "succeeded"
    assert resumed.output["body"] == {"ok": True, "attempt": 2}
    child_record = await store.get_run("p2.sub")
    assert child_record is not None and child_record.status == "succeeded"
    assert len(server.hits["child"]) == 2


async def test_an_unusable_answer_schema_is_a_clear_refusal(run: Runner,
                                                            store: SqliteStore) -> None:
    await run({"nodes": [approval("ok", {"type": "boolean"})]}, {"amount": 1},
              execution_id="badschema")
    record = await store.get_run("badschema")
    assert record is not None
    record.waiting_for[0]["schema"] = {"type": 5}  # as if stored before schemas were checked
    await store.save_run(record)
    with pytest.raises(NotResumable) as info:
        await resume_workflow("badschema", True, store=store)
    assert str(info.value).startswith("node `ok` has an unusable answer schema, so no answer "
                                      "can be checked: schema.type: not a valid JSON Schema")
    still = await store.get_run("badschema")
    assert still is not None and still.status == "waiting"


async def test_an_answer_schema_ref_is_not_fetched_at_resume(
        run: Runner, store: SqliteStore, schema_host: tuple[SchemaHost, str]) -> None:
    host, base = schema_host
    await run({"nodes": [approval("ok", {"type": "boolean"})]}, {"amount": 1},
              execution_id="refschema")
    record = await store.get_run("refschema")
    assert record is not None
    record.waiting_for[0]["schema"] = {"$ref": f"{base}/answer.json"}
    await store.save_run(record)
    with pytest.raises(NotResumable, match=r"schema\.\$ref: .* are not fetched"):
        await resume_workflow("refschema", 7, store=store)
    assert host.requests == 0


async def test_approvals_inside_foreach_items_are_answered_one_by_one(
        run: Runner, store: SqliteStore) -> None:
    body = {"nodes": [approval("ask"), t("echo", "{{ ask }}-{{ item }}")],
            "edges": chain("ask", "echo")}
    doc = {"nodes": [{"id": "each", "type": "foreach",
                      "config": {"items": "[1, 2, 3]", "body": body}}]}
    record = await run(doc, {"amount": 5})
    assert record.status == "waiting"
    assert sorted(w["node_id"] for w in record.waiting_for) == [
        "each[0].ask", "each[1].ask", "each[2].ask"]
    for answered, node in enumerate(("each[1].ask", "each[0].ask", "each[2].ask"), 1):
        record = await resume_workflow(record.execution_id, f"a{answered}", node_id=node,
                                       settings=run.settings, store=store)
        assert len(record.waiting_for) == 3 - answered
    assert record.status == "succeeded"
    assert record.output == ["a2-1", "a1-2", "a3-3"]
