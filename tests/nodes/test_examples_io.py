"""The examples that talk to the world, run against the local stand-ins."""

from __future__ import annotations

import json

from tests.conftest import REPO
from tests.servers import FlakyServer, ModelStub, SmtpServer
from tests.service_fixtures import ServiceRunner

EXAMPLES = REPO / "examples"


async def test_ai_triage_alerts_on_urgent(run_with: ServiceRunner, model_stub: ModelStub,
                                          smtp: SmtpServer) -> None:
    model_stub.script = [("text", json.dumps({"urgent": True, "summary": "site is down"}))]
    inputs = {"name": "Ada", "message": "Checkout fails!", "oncall": "ops@example.com"}
    record = await run_with(EXAMPLES / "ai-triage.json", inputs)
    assert record.output == {"urgent": True, "summary": "site is down", "alerted": True}
    assert smtp.inbox.messages[0]["Subject"] == "Urgent: site is down"
    assert "Message from Ada:\nCheckout fails!" in model_stub.requests[0]["messages"][1]["content"]


async def test_ai_triage_queues_the_rest(run_with: ServiceRunner, model_stub: ModelStub,
                                         smtp: SmtpServer) -> None:
    model_stub.script = [("text", json.dumps({"urgent": False, "summary": "a question"}))]
    inputs = {"name": "Bo", "message": "How do I export?", "oncall": "ops@example.com"}
    record = await run_with(EXAMPLES / "ai-triage.json", inputs)
    assert record.output == {"urgent": False, "summary": "a question", "alerted": False}
    assert record.node_states["alert"].status == "skipped"
    assert smtp.inbox.messages == []


async def test_http_retries_example(run_with: ServiceRunner,
                                    web: tuple[FlakyServer, str]) -> None:
    _server, base = web
    record = await run_with(EXAMPLES / "http-retries.json", {"url": f"{base}/flaky?key=ex&fail=2"})
    assert record.output == {"status": 200, "body": {"ok": True, "attempt": 3}}
    gave_up = await run_with(EXAMPLES / "http-retries.json", {"url": f"{base}/status/404"})
    assert gave_up.status == "succeeded"
    assert gave_up.output["error"].startswith("node `fetch`: HTTP 404")
