"""Pure ASGI middleware: correlation ids, API keys, and the request body limit."""

from __future__ import annotations

import hmac
import json
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowloom.app.api.errors import PROBLEM
from flowloom.app.logs import correlation_id

MAX_BODY_BYTES = 1024 * 1024
OPEN_PATHS = frozenset({"/health", "/docs", "/redoc", "/openapi.json", "/", "/ui"})
# The run viewer's pages and scripts, and the API docs' assets, carry no data; the viewer
# asks for a key and sends it.
OPEN_PREFIXES = ("/ui/", "/docs/")


async def _send_problem(send: Send, status: int, title: str, detail: str,
                        headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status,
                       "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class FlowloomMiddleware:
    """Correlation id in and out, bearer keys, and a body limit counted as bytes arrive
    (Content-Length is not trusted)."""

    def __init__(self, app: ASGIApp, api_keys: list[str], max_body: int = MAX_BODY_BYTES
                 ) -> None:
        self.app = app
        self.api_keys = [k.encode() for k in api_keys]
        self.max_body = max_body

    def _authorized(self, scope: Scope) -> bool:
        path = scope["path"]
        if not self.api_keys or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return True
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, key = header.partition(b" ")
        ok = False
        for allowed in self.api_keys:  # no early exit: compare with every key
            ok |= hmac.compare_digest(key, allowed)
        return scheme.lower() == b"bearer" and ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        cid = headers.get(b"x-correlation-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        token = correlation_id.set(cid)
        echo = [(b"x-correlation-id", cid.encode("latin-1"))]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *echo]}
            await send(message)

        try:
            if not self._authorized(scope):
                await _send_problem(send, 401, "Unauthorized", "a valid API key is required",
                                    [*echo, (b"www-authenticate", b"Bearer")])
                return
            received = 0
            started = rejected = False

            async def counted_receive() -> Message:
                nonlocal received, rejected
                message = await receive()
                if message["type"] == "http.request" and not rejected:
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        # Answer 413 now; the app sees the client leave and its own
                        # answer, if any, is dropped.
                        rejected = True
                        if not started:
                            await _send_problem(send, 413, "Request body too large",
                                                f"the limit is {self.max_body:,} bytes", echo)
                        return {"type": "http.disconnect"}
                return message

            async def tracking_send(message: Message) -> None:
                nonlocal started
                if rejected:
                    return
                started = started or message["type"] == "http.response.start"
                await send_with_id(message)

            await self.app(scope, counted_receive, tracking_send)
        finally:
            correlation_id.reset(token)

