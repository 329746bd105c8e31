"""The HTTP edge: limits on a request's head before any route (or auth) sees it, and
problem documents for what the server itself answers (malformed requests, crashes).

`HttpProtocol` is uvicorn's httptools protocol with a cap on the request line and
headers (bytes and count), answering 431, and on the time a head may take to arrive
(a slowloris client trickling header bytes, or a connection that sends nothing),
answering 408; its own 400 for a request that is not HTTP becomes a problem document
with an `X-Correlation-ID`. `CrashAsProblem` turns an
unhandled exception into a 500 problem that carries the request's correlation id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from flowloom.app.api.errors import PROBLEM
from flowloom.app.settings import REQUEST_HEAD_TIMEOUT_S

MAX_HEAD_BYTES = 64 * 1024  # request line and headers
MAX_HEADERS = 100
LINGER_S, LINGER_BYTES = 2.0, 1024 * 1024  # after a 431, what is read and dropped
log = logging.getLogger("flowloom.api")


def problem_bytes(status: int, detail: str, correlation_id: str) -> bytes:
    """A whole HTTP/1.1 response carrying a problem document, closing the connection."""
    phrase = HTTPStatus(status).phrase
    body = json.dumps({"type": "about:blank", "title": phrase, "status": status,
                       "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: {PROBLEM}\r\n"
            f"content-length: {len(body)}\r\nx-correlation-id: {correlation_id}\r\n"
            "connection: close\r\n\r\n")
    return head.encode("latin-1") + body


class _HeadTooLarge(Exception):  # raised through httptools to stop parsing
    pass


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the request's head capped in size and time."""

    head_timeout_s = REQUEST_HEAD_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = False  # between the first byte of a request and its headers' end
        self._head_bytes = 0  # of the head being parsed, as received
        self._header_count = 0
        self._refusal: str | None = None
        self._lingered = 0

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:  # answered: what the client still sends is dropped
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self.transport.close()
            return
        super().data_received(data)
        if self._in_head and self._refusal is None and not self.transport.is_closing():
            # Still inside a head: what httptools holds grows with every byte of it.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refusal = (f"the request line and headers are larger than "
                                 f"{MAX_HEAD_BYTES:,} bytes")
                self._answer_refusal()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn times nothing until a first response: a silent connection would stay.
        self._time_the_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timing_the_head()
        super().connection_lost(exc)

    def _time_the_head(self) -> None:
        self._stop_timing_the_head()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _stop_timing_the_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._refusal is not None:
            return
        log.warning("closed a connection whose request head took over %g s", self.head_timeout_s)
        self.transport.write(problem_bytes(
            408, f"the request line and headers did not arrive within "
                 f"{self.head_timeout_s:g} s", uuid.uuid4().hex))
        self.transport.close()

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes, self._header_count = True, 0, 0
        self._time_the_head()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_HEAD_BYTES:
            self._refuse(f"the request line is longer than {MAX_HEAD_BYTES:,} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._refuse(f"the request has more than {MAX_HEADERS} headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        self._stop_timing_the_head()
        super().on_headers_complete()

    def _refuse(self, detail: str) -> None:
        """From a parser callback: httptools stops, and uvicorn calls send_400_response."""
        self._refusal = detail
        raise _HeadTooLarge(detail)

    def _answer_refusal(self) -> None:
        """431, then a lingering close: closing with the client's bytes unread would
        reset the connection, and the client could lose the answer with it."""
        log.warning("refused a request: %s", self._refusal)
        self.transport.write(problem_bytes(431, self._refusal or "", uuid.uuid4().hex))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._answer_refusal()
            return
        self.transport.write(problem_bytes(400, f"not a valid HTTP/1.1 request: {msg}",
                                           uuid.uuid4().hex))
        self.transport.close()


def server_options(head_timeout_s: float = REQUEST_HEAD_TIMEOUT_S) -> dict[str, Any]:
    """What `uvicorn.run` needs for this edge (FLOWLOOM_REQUEST_HEAD_TIMEOUT_S)."""
    if head_timeout_s == HttpProtocol.head_timeout_s:
        return {"http": HttpProtocol}
    return {"http": type("HttpProtocol", (HttpProtocol,), {"head_timeout_s": head_timeout_s})}


CRASH_DETAIL = "an unexpected error happened; see the server log"


async def crash_outside_the_middleware(request: Request, exc: Exception) -> Response:
    """Starlette's outermost ServerErrorMiddleware answers with this (and logs the error)
    when an exception escapes even the middleware around CrashAsProblem: a problem
    document, never its plain-text 500."""
    correlation = request.headers.get("x-correlation-id") or uuid.uuid4().hex
    return Response(json.dumps({"type": "about:blank", "title": "Internal error",
                                "status": 500, "detail": CRASH_DETAIL}),
                    status_code=500, media_type=PROBLEM,
                    headers={"x-correlation-id": correlation[:255]})


class CrashAsProblem:
    """An exception no handler took becomes a 500 problem document, sent through the
    correlation-id middleware around it (so it carries `X-Correlation-ID`); the error
    is logged with its traceback. Once a response has started it can only be cut."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            body = json.dumps({"type": "about:blank", "title": "Internal error", "status": 500,
                               "detail": CRASH_DETAIL}).encode()
            await send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
