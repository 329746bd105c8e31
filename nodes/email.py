from __future__ import annotations

import hashlib
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import Field

from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class EmailConfig(NodeConfig):
    to: str | list[str]
    subject: str
    body: str
    html: str | None = None
    sender: str = Field(default="flowloom@localhost", alias="from")

    model_config = {"extra": "forbid", "populate_by_name": True}


def message_id(idempotency_key: str) -> str:
    """The same for every attempt and resume of one node, so receivers can dedupe."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@flowloom>"


class Email(NodeType):
    """Sends one email over SMTP (`FLOWLOOM_SMTP_URL`); output `{message_id}`."""

    name = "email"
    Config = EmailConfig
    templates = ("to", "subject", "body", "html")
    side_effects = True

    async def run(self, config: EmailConfig, ctx: Context) -> Any:
        import aiosmtplib  # the SMTP client loads with the first email, not with the registry

        url = ctx.services.settings.smtp_url
        if not url:
            raise NodeError("FLOWLOOM_SMTP_URL is not set", node_id=ctx.node_id, kind="ConfigError")
        to = await ctx.render(config.to, field="to")
        recipients = [to] if isinstance(to, str) else [str(r) for r in to]
        if not recipients or not all("@" in r for r in recipients):
            raise NodeError(f"`to` must be one or more email addresses, got {to!r}",
                            node_id=ctx.node_id, field="to")
        msg = EmailMessage()
        msg["From"] = config.sender
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = str(await ctx.render(config.subject, field="subject"))
        msg["Message-ID"] = message_id(ctx.idempotency_key)
        msg.set_content(str(await ctx.render(config.body, field="body")))
        if config.html:
            msg.add_alternative(str(await ctx.render(config.html, field="html")), subtype="html")
        parts = urlsplit(str(url))
        try:
            await aiosmtplib.send(
                msg, hostname=parts.hostname, port=parts.port or 25,
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                use_tls=parts.scheme == "smtps", start_tls=None)
        except aiosmtplib.SMTPResponseException as exc:
            raise NodeError(f"SMTP server refused the message: {exc.code} {exc.message}",
                            kind="SMTPError", retriable=exc.code >= 400 and exc.code < 500
                            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise NodeError(f"cannot send email via {parts.hostname}:{parts.port}: {exc}",
                            kind="SMTPError", retriable=True) from None
        return {"message_id": msg["Message-ID"]}
