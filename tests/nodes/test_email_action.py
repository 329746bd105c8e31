"""email against aiosmtpd, action against a Composio-compatible API on loopback."""

from __future__ import annotations

from flowloom.app.services import open_services
from flowloom.app.settings import Settings, load_settings
from flowloom.nodes.email import message_id
from tests.servers import FlakyServer, SmtpServer
from tests.service_fixtures import ServiceRunner


def email(**config: object) -> dict:
    return {"id": "mail", "type": "email", "config": {
        "to": "{{ inputs.to }}", "subject": "Hi {{ inputs.name }}",
        "body": "Hello {{ inputs.name }}", **config}}


async def test_email_is_delivered_with_a_stable_message_id(run_with: ServiceRunner,
                                                           smtp: SmtpServer) -> None:
    record = await run_with({"nodes": [email(html="<b>{{ inputs.name }}</b>")]},
                            {"to": "ada@example.com", "name": "Ada"}, execution_id="mail-1")
    assert record.status == "succeeded"
    [msg] = smtp.inbox.messages
    assert msg["To"] == "ada@example.com" and msg["Subject"] == "Hi Ada"
    assert msg["Message-ID"] == message_id("mail-1:mail") == record.output["message_id"]
    parts = {p.get_content_type(): p.get_payload(decode=True).decode().strip()
             for p in msg.walk() if not p.is_multipart()}
    assert parts == {"text/plain": "Hello Ada", "text/html": "<b>Ada</b>"}


async def test_email_to_a_list_and_bad_address(run_with: ServiceRunner,
                                               smtp: SmtpServer) -> None:
    record = await run_with({"nodes": [email(to=["a@x.io", "b@x.io"])]}, {"name": "N"})
    assert smtp.inbox.messages[0]["To"] == "a@x.io, b@x.io" and record.status == "succeeded"
    bad = await run_with({"nodes": [email()]}, {"to": "not-an-address", "name": "N"})
    assert bad.status == "failed"
    assert "`to` must be one or more email addresses" in bad.errors[0].message


async def test_email_server_down_is_retriable_and_names_the_node(
        node_settings: Settings, run_with: ServiceRunner) -> None:
    down = load_settings(**{**node_settings.model_dump(), "smtp_url": "smtp://127.0.0.1:9"})
    async with open_services(down) as services:
        record = await run_with.runner(
            {"nodes": [{**email(), "retry": {"max_attempts": 2, "initial_delay_s": 0.01}}]},
            {"to": "a@x.io", "name": "N"}, services=services)
    assert record.status == "failed"
    assert record.node_states["mail"].attempts == 2
    assert record.errors[0].message.startswith("node `mail`: cannot send email via 127.0.0.1:9")


async def test_action_calls_the_tool_provider_with_idempotency_key(
        run_with: ServiceRunner, web: tuple[FlakyServer, str]) -> None:
    server, _ = web
    node = {"id": "post", "type": "action", "config": {
        "tool": "slack", "action": "SLACK_SEND_MESSAGE", "connection_id": "conn-1",
        "input": {"channel": "#general", "text": "New: {{ inputs.subject }}"}}}
    record = await run_with({"nodes": [node]}, {"subject": "hello"}, execution_id="act-1")
    assert record.output == {"action": "SLACK_SEND_MESSAGE", "api_key": "composio-test-key",
                             "arguments": {"channel": "#general", "text": "New: hello"}}
    [hit] = server.hits["tool:SLACK_SEND_MESSAGE"]
    assert hit["idempotency_key"] == "act-1:post"
    assert hit["body"]["connected_account_id"] == "conn-1" and hit["body"]["toolkit"] == "slack"


async def test_action_failure_reported_by_the_tool(run_with: ServiceRunner) -> None:
    node = {"id": "post", "type": "action", "config": {"tool": "slack", "action": "FAILING"}}
    record = await run_with({"nodes": [node]})
    assert record.status == "failed"
    assert record.errors[0].message == (
        "node `post`: tool call slack.FAILING failed: channel not found")
