from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class HttpConfig(NodeConfig):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    expect_status: list[int] | int | None = None  # default: any 2xx
    # Headers that carry credentials besides Authorization, Cookie and Proxy-Authorization:
    # dropped, like those, on a redirect to another origin.
    sensitive_headers: list[str] = Field(default_factory=list)

    model_config = {"extra": "forbid", "populate_by_name": True}

    @model_validator(mode="after")
    def _one_body(self) -> HttpConfig:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give either `json` or `body`, not both")
        return self


class Http(NodeType):
    """Calls an HTTP endpoint; output `{status, headers, body}` (JSON bodies parsed).
    Sends `Idempotency-Key`, stable across retries and resumes."""

    name = "http"
    Config = HttpConfig
    templates = ("url", "headers", "query", "json_body", "body")
    side_effects = True
    masked_fields = ("query",)  # its values end up in the URL's query

    def secret_names(self, config: HttpConfig) -> list[str]:
        return config.sensitive_headers

    async def run(self, config: HttpConfig, ctx: Context) -> Any:
        from flowloom.nodes.net import HttpPolicy, send, status_error  # httpx: not to validate

        client = ctx.services.http
        if client is None:
            raise NodeError("no HTTP client in the runtime context", node_id=ctx.node_id)
        headers = {str(k): str(v) for k, v in
                   (await ctx.render(config.headers, field="headers")).items()}
        headers.setdefault("Idempotency-Key", ctx.idempotency_key)
        json_body = await ctx.render(config.json_body, field="json")
        body = await ctx.render(config.body, field="body")
        reply = await send(
            client, config.method, str(await ctx.render(config.url, field="url")),
            policy=HttpPolicy.from_settings(ctx.services.settings), headers=headers,
            params=await ctx.render(config.query, field="query") or None, json_body=json_body,
            content=body.encode() if isinstance(body, str) else None,
            sensitive_headers=config.sensitive_headers,
        )
        expected = config.expect_status
        ok = (200 <= reply.status < 300 if expected is None
              else reply.status in (expected if isinstance(expected, list) else [expected]))
        if not ok:
            raise status_error(reply, config.method, ctx.path)
        return {"status": reply.status, "headers": reply.headers, "body": reply.parsed()}
