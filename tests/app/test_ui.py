"""The run viewer (/ui) in headless Chromium against a real `flowloom serve`."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.test_serve import Server
from tests.servers import free_port

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
# Screenshots for a person to look at; never committed.
ARTIFACTS = Path(os.environ.get("FLOWLOOM_UI_ARTIFACTS",
                                Path(tempfile.gettempdir()) / "flowloom-ui-artifacts"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("ui"))
    started.env["FLOWLOOM_HTTP_ALLOW_PRIVATE"] = "true"
    started.start()
    yield started
    started.kill()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened
    context.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def start(server: Server, workflow: dict[str, Any], inputs: dict[str, Any] | None = None,
          headers: dict[str, str] | None = None) -> str:
    response = httpx.post(f"{server.url}/execute", headers=headers, json={
        "workflow": workflow, "inputs": inputs or {}, "mode": "async"})
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


def delay_chain(seconds: float) -> dict[str, Any]:
    return {"id": "chain", "nodes": [
        {"id": "a", "type": "transform", "config": {"output": 1}},
        {"id": "nap", "type": "delay", "config": {"seconds": seconds}},
        {"id": "b", "type": "transform", "config": {"output": "{{ a + 1 }}"}}],
        "edges": [{"source": "a", "target": "nap"}, {"source": "nap", "target": "b"}]}


PARALLEL = {"id": "fanout", "nodes": [
    {"id": "fan", "type": "parallel"},
    {"id": "left", "type": "delay", "config": {"seconds": 1.5}},
    {"id": "right", "type": "delay", "config": {"seconds": 1.5}},
    {"id": "all", "type": "join"},
    {"id": "end", "type": "end", "config": {"output": "{{ all.keys() | sort }}"}}],
    "edges": [{"source": "fan", "target": "left"}, {"source": "fan", "target": "right"},
              {"source": "left", "target": "all"}, {"source": "right", "target": "all"},
              {"source": "all", "target": "end"}]}

APPROVAL = {"id": "approve-spend", "nodes": [
    {"id": "ask", "type": "approval", "config": {
        "prompt": "Approve the spend?",
        "schema": {"type": "object", "required": ["approved", "amount"], "properties": {
            "approved": {"type": "boolean", "title": "Approved"},
            "amount": {"type": "integer", "minimum": 10, "multipleOf": 5,
                       "title": "Amount"},
            "team": {"enum": ["ops", "sales"], "title": "Team"}}}}},
    {"id": "end", "type": "end", "config": {"output": "{{ ask.amount }}"}}],
    "edges": [{"source": "ask", "target": "end"}]}


def test_a_new_run_appears_live_in_the_list_and_its_status_changes(server: Server,
                                                                   page: Any) -> None:
    page.goto(f"{server.url}/")
    expect(page).to_have_url(f"{server.url}/ui")
    expect(page.locator("#page-label")).to_have_text("Page 1")
    run_id = start(server, APPROVAL)  # it waits until answered: no race with the poll
    first = page.locator("#runs-body tr").first
    expect(first).to_have_attribute("data-execution-id", run_id)
    expect(first).to_have_attribute("data-status", "waiting")
    shot(page, "runs")
    answered = httpx.post(f"{server.url}/executions/{run_id}/resume",
                          json={"value": {"approved": True, "amount": 10}})
    assert answered.status_code == 200, answered.text
    expect(first).to_have_attribute("data-status", "succeeded")
    page.fill("#f-search", run_id)
    page.press("#f-search", "Enter")
    expect(page).to_have_url(f"{server.url}/ui/runs/{run_id}")
    expect(page.locator("#run-output")).to_have_text("10")


def test_a_parallel_runs_node_colours_follow_its_events(server: Server, page: Any) -> None:
    run_id = start(server, PARALLEL)
    page.goto(f"{server.url}/ui/runs/{run_id}")
    left = page.locator('svg.graph .node[data-node-id="left"]')
    expect(left).to_have_attribute("data-status", "running")
    expect(page.locator('svg.graph .node[data-node-id="right"]')).to_have_attribute(
        "data-status", "running")
    shot(page, "run-parallel-running")
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    for node in ("fan", "left", "right", "all", "end"):
        expect(page.locator(f'svg.graph .node[data-node-id="{node}"]')).to_have_attribute(
            "data-status", "succeeded")
    # the two branches' bars overlap in time on the timeline
    a = page.locator('.bar[data-node-id="left"]').bounding_box()
    b = page.locator('.bar[data-node-id="right"]').bounding_box()
    assert a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
    shot(page, "run-parallel-done")


def test_a_failed_nodes_panel_shows_its_error_and_attempts(server: Server,
                                                          page: Any) -> None:
    workflow = {"id": "flaky-call", "nodes": [
        {"id": "call", "type": "http", "config": {"url": f"http://127.0.0.1:{free_port()}/"},
         "retry": {"max_attempts": 2, "initial_delay_s": 0.05, "jitter": False}}]}
    run_id = start(server, workflow)
    page.goto(f"{server.url}/ui/runs/{run_id}")
    expect(page.locator("#run-status .badge")).to_have_text("failed")
    page.locator('svg.graph .node[data-node-id="call"]').focus()
    page.keyboard.press("Enter")  # graph nodes are keyboard buttons
    expect(page.locator("#panel-node")).to_have_text("call")
    expect(page.locator("#panel-attempts")).to_have_text("2")
    expect(page.locator("#panel-error-kind")).not_to_be_empty()
    expect(page.locator("#panel-error-message")).not_to_be_empty()
    expect(page.locator('.bar[data-node-id="call"]')).to_contain_text("failed \u00d72")
    # each attempt and the backoff between them, in order, on the bar and in the panel
    pieces = page.locator('.bar[data-node-id="call"] .seg')

    expect(pieces).to_have_count(3)
    assert [pieces.nth(i).get_attribute("data-kind") for i in range(3)] == [
        "run", "backoff", "run"]
    expect(page.locator("#panel-attempt-list li")).to_have_text([
        re.compile(r"^attempt 1: failed"), re.compile(r"^backoff"),
        re.compile(r"^attempt 2: failed")])
    shot(page, "run-failed-panel")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#action-msg")).to_have_text("Resumed.")
    # a second round of attempts, logged after the first
    expect(page.locator("#run-logs")).to_have_text(re.compile(r"(retrying.*){2}", re.S))
    expect(page.locator("#panel-attempts")).to_have_text("2")
    expect(page.locator("#run-status .badge")).to_have_text("failed")


def test_an_approval_answered_in_the_page_resumes_the_run(server: Server, page: Any) -> None:
    run_id = start(server, APPROVAL)
    page.goto(f"{server.url}/ui/runs/{run_id}")
    form = page.locator('form.prompt[data-node-id="ask"]')
    expect(form).to_contain_text("Approve the spend?")
    form.get_by_label("Approved").check()
    form.get_by_label("Amount").fill("5")
    form.get_by_role("button", name="Send answer").click()
    # refused in the page, by the schema's minimum
    expect(form).to_contain_text("5 is less than the minimum of 10")
    expect(form.get_by_label("Amount")).to_have_attribute("aria-invalid", "true")
    form.get_by_label("Amount").fill("12")
    form.get_by_role("button", name="Send answer").click()
    # refused by the server (the page does not check multipleOf): its 422 is shown
    expect(form).to_contain_text("12 is not a multiple of 5")
    assert httpx.get(f"{server.url}/executions/{run_id}").json()["status"] == "waiting"
    shot(page, "approval-refused")
    form.get_by_label("Team").select_option("ops")
    form.get_by_label("Amount").fill("15")
    form.get_by_role("button", name="Send answer").click()
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    expect(page.locator("#run-output")).to_have_text("15")
    assert httpx.get(f"{server.url}/executions/{run_id}").json()["node_states"]["ask"][
        "output"] == {"approved": True, "amount": 15, "team": "ops"}


def test_the_inbox_lists_every_waiting_prompt(server: Server, page: Any) -> None:
    ids = [start(server, APPROVAL) for _ in range(2)]
    page.goto(f"{server.url}/ui/inbox")
    for run_id in ids:
        expect(page.locator(f'[data-execution-id="{run_id}"] form.prompt')).to_contain_text(
            "Approve the spend?")
    shot(page, "inbox")
    item = page.locator(f'[data-execution-id="{ids[0]}"]')
    item.get_by_label("Approved").check()
    item.get_by_label("Amount").fill("20")
    item.get_by_role("button", name="Send answer").click()
    expect(page.locator(f'[data-execution-id="{ids[0]}"]')).to_have_count(0)
    expect(page.locator(f'[data-execution-id="{ids[1]}"]')).to_have_count(1)


def test_cancel_from_the_run_page(server: Server, page: Any) -> None:
    run_id = start(server, delay_chain(60))
    page.goto(f"{server.url}/ui/runs/{run_id}")
    expect(page.locator('svg.graph .node[data-node-id="nap"]')).to_have_attribute(
        "data-status", "running")
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-status .badge")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel run")).to_be_disabled()
    assert httpx.get(f"{server.url}/executions/{run_id}").json()["status"] == "cancelled"
    page.get_by_role("button", name="Re-run with same inputs").click()
    expect(page).not_to_have_url(f"{server.url}/ui/runs/{run_id}")
    expect(page.locator('svg.graph .node[data-node-id="nap"]')).to_have_attribute(
        "data-status", "running")
    again = page.locator("#run-id").inner_text()
    assert httpx.get(f"{server.url}/executions/{again}").json()["workflow_id"] == "chain"
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-status .badge")).to_have_text("cancelled")


def test_paging_through_120_runs_newest_first(server: Server, page: Any) -> None:
    document = {"id": "pager", "nodes": [{"id": "one", "type": "transform",
                                          "config": {"output": 1}}]}
    assert httpx.post(f"{server.url}/workflows", json=document).status_code == 201
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(120):
            assert client.post("/workflows/pager/execute", json={}).status_code == 200
    expected = [r["execution_id"] for r in httpx.get(
        f"{server.url}/workflows/pager/executions", params={"limit": 200}).json()["items"]]
    assert len(expected) == 120
    page.goto(f"{server.url}/ui?workflow=pager")
    seen: list[str] = []
    for number in range(1, 6):
        expect(page.locator("#page-label")).to_have_text(f"Page {number}")
        rows = page.locator("#runs-body tr")
        expect(rows).to_have_count(25 if number < 5 else 20)
        seen += [rows.nth(i).get_attribute("data-execution-id") or ""
                 for i in range(rows.count())]
        if number < 5:
            page.get_by_role("button", name="Older →").click()
    assert seen == expected
    expect(page.get_by_role("button", name="Older →")).to_be_disabled()
    page.get_by_role("button", name="← Newer").click()
    expect(page.locator("#page-label")).to_have_text("Page 4")
    expect(page.locator("#runs-body tr").first).to_have_attribute("data-execution-id",
                                                                  expected[75])


def test_the_page_asks_for_the_api_key_once(tmp_path: Path, page: Any) -> None:
    secured = Server(tmp_path)
    secured.env["FLOWLOOM_API_KEYS"] = "s3cret"
    secured.start()
    try:
        key = {"Authorization": "Bearer s3cret"}
        run_id = start(secured, delay_chain(0.01), headers=key)
        page.goto(f"{secured.url}/ui")
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        page.get_by_role("textbox", name="API key").fill("wrong")
        page.get_by_role("button", name="Use this key").click()
        expect(page.locator("#key-error")).to_be_visible()
        shot(page, "api-key")
        page.get_by_role("textbox", name="API key").fill("s3cret")
        page.get_by_role("button", name="Use this key").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#runs-body tr").first).to_have_attribute("data-execution-id",
                                                                      run_id)
        page.goto(f"{secured.url}/ui/runs/{run_id}")  # the key is kept for the tab
        expect(page.locator("#run-status .badge")).to_have_text("succeeded")
        expect(dialog).to_be_hidden()
    finally:
        secured.kill()


def test_workflows_page_shows_versions_graph_and_a_run_form(server: Server, page: Any) -> None:
    document = {"id": "greet", "name": "Greeter", "inputs_schema": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 2, "title": "Name"},
                       "shout": {"type": "boolean", "title": "Shout"}}},
        "nodes": [{"id": "hi", "type": "transform", "config": {"output": "Hi {{ inputs.name }}"}}]}
    assert httpx.post(f"{server.url}/workflows", json=document).status_code == 201
    changed = {**document, "nodes": [*document["nodes"], {
        "id": "end", "type": "end", "config": {"output": "{{ hi }}!"}}],
        "edges": [{"source": "hi", "target": "end"}]}
    assert httpx.put(f"{server.url}/workflows/greet", json=changed).json()["version"] == 2
    page.goto(f"{server.url}/ui/workflows")
    row = page.locator('tr[data-workflow-id="greet"]')
    expect(row).to_contain_text("Greeter")
    expect(row).to_contain_text("v2")
    row.get_by_role("link", name="greet").click()
    expect(page.locator("svg.graph .node")).to_have_count(2)
    page.get_by_label("Version").select_option("1")
    expect(page).to_have_url(f"{server.url}/ui/workflows/greet?version=1")
    expect(page.locator("svg.graph .node")).to_have_count(1)
    expect(page.locator("#mermaid")).to_contain_text("hi")
    expect(page.locator("#run-form")).to_contain_text("This form runs version 1; the latest is 2.")
    page.get_by_label("Name").fill("A")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#run-form")).to_contain_text('"A" is too short')
    page.get_by_label("Name").fill("Ada")
    shot(page, "workflow")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    expect(page.locator("#run-header")).to_contain_text("greet version 1")
    expect(page.locator("#run-output")).to_have_text('"Hi Ada"')  # version 1 has no `end`
    expect(page.locator("#run-inputs")).to_contain_text('"shout": false')


def test_phone_width_pages_fit(server: Server, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    phone = context.new_page()
    try:
        run_id = start(server, PARALLEL)
        phone.goto(f"{server.url}/ui/runs/{run_id}")
        expect(phone.locator("#run-status .badge")).to_have_text("succeeded")
        shot(phone, "run-phone")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # nothing forces sideways scrolling
        phone.goto(f"{server.url}/ui")
        expect(phone.locator("#runs-body tr").first).to_have_attribute("data-execution-id",
                                                                       run_id)
        shot(phone, "runs-phone")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_parent_and_child_runs_link_to_each_other(server: Server, page: Any) -> None:
    child = {"nodes": [{"id": "inner", "type": "transform", "config": {"output": 7}}]}
    run_id = start(server, {"id": "parent", "nodes": [
        {"id": "sub", "type": "subworkflow", "config": {"workflow": child}}]})
    page.goto(f"{server.url}/ui/runs/{run_id}")
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    child_id = httpx.get(f"{server.url}/executions/{run_id}").json()["node_states"]["sub"][
        "child_execution_id"]
    page.locator('.bar[data-node-id="sub"]').click()  # the timeline opens the panel too
    expect(page.locator("#node-panel")).to_contain_text(child_id)
    page.locator("#run-header").get_by_role("link", name=child_id).click()
    expect(page.locator("#run-id")).to_have_text(child_id)
    expect(page.locator("#run-output")).to_have_text("7")
    page.locator("#run-header").get_by_role("link", name=run_id).click()
    expect(page.locator("#run-id")).to_have_text(run_id)


def test_two_versions_are_compared_node_by_node(server: Server, page: Any) -> None:
    first = {"id": "shop", "name": "Shop", "nodes": [
        {"id": "fetch", "type": "http", "config": {"url": "https://example.com/a"}},
        {"id": "parse", "type": "transform", "config": {"output": "{{ fetch.body }}"}},
        {"id": "old", "type": "transform", "config": {"output": 1}}],
        "edges": [{"source": "fetch", "target": "parse"}, {"source": "parse", "target": "old"}]}
    second = {"id": "shop", "name": "Shop v2", "nodes": [
        {"id": "fetch", "type": "http", "config": {"url": "https://example.com/b"},
         "retry": {"max_attempts": 5}},
        {"id": "parse", "type": "transform", "config": {"output": "{{ fetch.body }}"}},
        {"id": "end", "type": "end", "config": {"output": "{{ parse }}"}}],
        "edges": [{"source": "fetch", "target": "parse"}, {"source": "parse", "target": "end"}]}
    assert httpx.post(f"{server.url}/workflows", json=first).status_code == 201
    assert httpx.put(f"{server.url}/workflows/shop", json=second).json()["version"] == 2
    page.goto(f"{server.url}/ui/workflows/shop")
    expect(page.locator("#diff-summary")).to_have_text(
        "Version 1 → 2: 1 node added, 1 removed, 1 changed; 1 edge added, 1 removed; "
        "1 other change.")
    nodes = page.locator("#diff-nodes > li")
    expect(nodes).to_have_count(3)
    assert [(nodes.nth(i).get_attribute("data-diff"), nodes.nth(i).get_attribute("data-key"))
            for i in range(3)] == [("added", "end"), ("removed", "old"), ("changed", "fetch")]
    changed = page.locator('#diff-nodes > li[data-key="fetch"] li')
    expect(changed).to_have_text([
        'config.url: "https://example.com/a" → "https://example.com/b"',
        "retry.max_attempts: 3 → 5"])  # 3 is the stored default
    edges = page.locator("#diff-edges > li")
    assert [edges.nth(i).get_attribute("data-key") for i in range(edges.count())] == [
        "parse → end", "parse → old"]
    expect(page.locator("#diff-workflow li")).to_have_text(['name: "Shop" → "Shop v2"'])
    shot(page, "workflow-diff")
    page.get_by_label("From").select_option("2")  # the same version: nothing differs
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#diff-summary")).to_have_text(
        "Versions 2 and 2 hold the same workflow.")
    expect(page.locator("#diff-nodes")).to_have_count(0)


def test_rerun_uses_the_runs_pinned_version(server: Server, page: Any) -> None:
    document = {"id": "pinned", "nodes": [
        {"id": "say", "type": "transform", "config": {"output": "first"}}]}
    assert httpx.post(f"{server.url}/workflows", json=document).status_code == 201
    ran = httpx.post(f"{server.url}/workflows/pinned/execute", json={}).json()
    assert ran["workflow_version"] == 1
    newer = {**document, "nodes": [{**document["nodes"][0], "config": {"output": "second"}}]}
    assert httpx.put(f"{server.url}/workflows/pinned", json=newer).json()["version"] == 2
    page.goto(f"{server.url}/ui/runs/{ran['execution_id']}")
    expect(page.locator("#run-output")).to_have_text('"first"')
    page.get_by_role("button", name="Re-run with same inputs").click()
    expect(page).not_to_have_url(f"{server.url}/ui/runs/{ran['execution_id']}")
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    expect(page.locator("#run-header")).to_contain_text("pinned version 1")
    expect(page.locator("#run-output")).to_have_text('"first"')
    again = page.locator("#run-id").inner_text()
    assert httpx.get(f"{server.url}/executions/{again}").json()["workflow_version"] == 1


FOREACH = {"id": "each-item", "nodes": [
    {"id": "each", "type": "foreach", "on_error": "continue", "config": {
        "items": "{{ range(12) | list }}", "max_concurrency": 1, "body": {
            "nodes": [{"id": "nap", "type": "delay", "config": {"seconds": 0.25}},
                      {"id": "div", "type": "transform",
                       "config": {"output": "{{ 12 / (item % 5) }}"}}],
            "edges": [{"source": "nap", "target": "div"}]}}},
    {"id": "again", "type": "while", "config": {
        "condition": "{{ loop.iteration < 3 }}",
        "body": {"nodes": [{"id": "step", "type": "transform", "config": {"output": 1}}]}}}],
    "edges": [{"source": "each", "target": "again"}]}


def test_a_running_foreach_counts_its_items_live_and_its_body_expands(server: Server,
                                                                     page: Any) -> None:
    run_id = start(server, FOREACH)
    page.goto(f"{server.url}/ui/runs/{run_id}")
    each = page.locator('svg.graph .node[data-node-id="each"]')
    # one node while it runs, its items counted as they start (12 items, one at a time),
    # of the total it announced (until all have started)
    expect(each).to_have_attribute("data-status", "running")
    expect(each.locator(":scope > .counts")).to_have_text(re.compile(r"^([1-9]\d*/12|12) items"))
    toggle = each.get_by_role("button", name="Show the body of each (2 nodes)")
    toggle.focus()
    page.keyboard.press("Enter")
    body = page.locator('svg.graph .node[data-node-id="each[*].nap"]')
    expect(body).to_be_visible()
    expect(page.locator('.lane[data-node-id="each[*].nap"]')).to_have_count(1)
    shot(page, "run-foreach-running")
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    # items 0, 5 and 10 divide by zero: three failed items, the rest ok
    expect(each.locator(":scope > .counts")).to_have_text("12 items · 3 failed")
    expect(each).to_have_attribute("data-status", "failed")
    div = page.locator('svg.graph .node[data-node-id="each[*].div"]')
    expect(div.locator(".counts")).to_have_text("9 ok · 3 failed")
    expect(page.locator('svg.graph .node[data-node-id="again"] .counts')).to_have_text(
        "3 iterations")
    expect(page.locator('.bar[data-node-id="each[*].div"]')).to_have_attribute(
        "aria-label", "each[*].div: 9 ok · 3 failed")
    div.click()
    expect(page.locator("#panel-node")).to_have_text("each[*].div")
    failed = page.locator('#panel-items-list li[data-status="failed"] button')
    expect(failed).to_have_text(["each[0].div", "each[5].div", "each[10].div"])
    page.locator("#panel-item-0").fill("7")
    div.click()  # the panel drawn again (as late events do) keeps what was typed
    expect(page.locator("#panel-item-0")).to_have_value("7")
    page.get_by_role("button", name="Open item").click()
    expect(page.locator("#panel-node")).to_have_text("each[7].div")
    expect(page.locator("#panel-output")).to_have_text("6")  # 12 / 2
    expect(page.locator("#panel-received")).to_contain_text("nap (succeeded)")
    each.click(position={"x": 20, "y": 20})
    expect(page.locator("#panel-node")).to_have_text("each")
    expect(page.locator("#panel-items")).to_have_text("12 items · 3 failed")
    page.locator("#panel-failed-items").get_by_role("button", name="each[5].div").click()
    expect(page.locator("#panel-node")).to_have_text("each[5].div")
    expect(page.locator("#panel-error-message")).to_contain_text("division by zero")
    shot(page, "run-foreach-done")
    toggle = each.get_by_role("button", name="Hide the body of each (2 nodes)")
    toggle.click()
    expect(body).to_have_count(0)
    expect(page.locator('.lane[data-node-id="each[*].nap"]')).to_have_count(0)


def test_runs_are_found_by_error_text_and_time_range(server: Server, page: Any) -> None:
    broken = {"id": "broken", "nodes": [{"id": "x", "type": "transform", "config": {
        "output": "{{ no_such_name_qz }}"}}]}
    run_id = start(server, broken)
    created = ""
    for _ in range(600):  # a generous bound: only a hang trips it
        record = httpx.get(f"{server.url}/executions/{run_id}").json()
        if record["status"] == "failed":
            created = record["created_at"]
            break
        time.sleep(0.05)
    assert created, "the run never failed"
    page.goto(f"{server.url}/ui")
    page.get_by_label("Error text").fill("NO_SUCH_NAME_QZ")
    # from the second it was created: it is the one run with that error
    second = page.evaluate("(iso) => { const d = new Date(iso); d.setMilliseconds(0);"
                           " return new Date(d - d.getTimezoneOffset() * 60000)"
                           ".toISOString().slice(0, 19); }", created)
    page.get_by_label("Created from").fill(second)
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("#runs-body tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-execution-id", run_id)
    expect(page).to_have_url(re.compile(r"[?&]error=NO_SUCH_NAME_QZ"))
    shot(page, "runs-filtered")
    page.get_by_label("Created before").fill(second)  # before it was created: none
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#runs-body")).to_have_text("No runs match.")
    page.reload()  # the filters live in the address
    expect(page.get_by_label("Error text")).to_have_value("NO_SUCH_NAME_QZ")
    expect(page.get_by_label("Created before")).to_have_value(second)
    expect(page.locator("#runs-body")).to_have_text("No runs match.")
