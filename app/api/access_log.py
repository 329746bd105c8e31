"""The access log: one structured line per request, after its answer has gone out."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowloom.app.logs import bound_correlation_id

log = logging.getLogger("flowloom.access")


class AccessLog:
    """Outermost middleware, so refusals (401, 413) are logged too; the correlation id is
    the one the response carries. The path is logged without its query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None
        logged = False
        # The response's X-Correlation-ID; the request's if no response started.
        cid = dict(scope["headers"]).get(b"x-correlation-id", b"").decode("latin-1") or None

        def write() -> None:
            nonlocal logged
            logged = True
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            method, path = scope["method"], scope["path"]
            with bound_correlation_id(cid):
                log.info("%s %s %s %.1f ms", method, path, status, duration_ms,
                         extra={"method": method, "path": path, "status": status,
                                "duration_ms": duration_ms})

        async def noting_send(message: Message) -> None:
            nonlocal status, cid
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"x-correlation-id":
                        cid = value.decode("latin-1")
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                write()  # before the answer's last bytes: a client that has it, has its line
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        except Exception:
            status = status or 500  # the server answers 500 for what escaped the app
            raise
        finally:
            if not logged:  # no complete answer: an error, or the client left
                write()
