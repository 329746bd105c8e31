"""Idempotency keys of side-effecting nodes: one per loop item, the same on every attempt."""

from __future__ import annotations

from tests.nodes.test_http import FAST_RETRY, Web, http
from tests.service_fixtures import ServiceRunner


async def test_foreach_items_send_distinct_keys_kept_across_a_retry(
        run_with: ServiceRunner, web: Web) -> None:
    server, base = web
    body = {"nodes": [http("post", f"{base}/flaky?key=idem{{{{ item }}}}&fail=1",
                           method="POST", retry=FAST_RETRY)]}
    doc = {"nodes": [{"id": "each", "type": "foreach",
                      "config": {"items": "[0, 1, 2]", "body": body}}]}
    record = await run_with(doc, execution_id="exec-idem")
    assert record.status == "succeeded"
    assert [item["body"] for item in record.output] == [{"ok": True, "attempt": 2}] * 3
    for i in range(3):  # first attempt answered 503, the second succeeded: same key
        assert [hit["idempotency_key"] for hit in server.hits[f"idem{i}"]] == [
            f"exec-idem:each[{i}].post"] * 2
    assert sorted(server.hits) == ["idem0", "idem1", "idem2"]


async def test_a_nested_loop_qualifies_the_key_with_every_enclosing_item(
        run_with: ServiceRunner, web: Web) -> None:
    server, base = web
    inner = {"nodes": [http("call", f"{base}/echo?key=nest")]}
    outer = {"nodes": [{"id": "inner", "type": "foreach",
                        "config": {"items": "[0, 1]", "body": inner}}]}
    doc = {"nodes": [{"id": "outer", "type": "foreach",
                      "config": {"items": "[0, 1]", "body": outer}}]}
    record = await run_with(doc, execution_id="exec-nest")
    assert record.status == "succeeded"
    assert sorted(hit["idempotency_key"] for hit in server.hits["nest"]) == [
        "exec-nest:outer[0].inner[0].call", "exec-nest:outer[0].inner[1].call",
        "exec-nest:outer[1].inner[0].call", "exec-nest:outer[1].inner[1].call"]
