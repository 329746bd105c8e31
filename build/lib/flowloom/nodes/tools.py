"""Tool providers of `action` nodes: a small interface and one real provider."""

from __future__ import annotations

from typing import Any

import httpx

from flowloom.graphs.errors import NodeError
from flowloom.nodes.net import RETRIABLE_STATUS, retry_after_seconds


class ComposioProvider:
    """Calls a Composio-compatible REST API: `POST {base}/api/v3/tools/execute/{action}`."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, api_key: str | None) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    async def execute(self, *, tool: str, action: str, connection_id: str | None,
                      arguments: dict[str, Any], idempotency_key: str) -> Any:
        headers = {"Idempotency-Key": idempotency_key}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        body = {"toolkit": tool, "connected_account_id": connection_id, "arguments": arguments}
        url = f"{self.base_url}/api/v3/tools/execute/{action}"
        try:
            response = await self.client.post(url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise NodeError(f"tool call {tool}.{action} timed out", kind="TimeoutError",
                            retriable=True) from None
        except httpx.TransportError as exc:
            raise NodeError(f"cannot reach the tool provider: {exc}", kind="NetworkError",
                            retriable=True) from None
        if response.status_code >= 400:
            raise NodeError(
                f"tool call {tool}.{action} failed: HTTP {response.status_code}: "
                f"{response.text[:200]}", kind="ToolError",
                retriable=response.status_code in RETRIABLE_STATUS
                or response.status_code >= 500,
                retry_after_s=retry_after_seconds(response.headers.get("retry-after")))
        result = response.json()
        if isinstance(result, dict) and result.get("successful") is False:
            raise NodeError(f"tool call {tool}.{action} failed: {result.get('error')}",
                            kind="ToolError")
        return result.get("data", result) if isinstance(result, dict) else result
