"""serve and worker: the long-running processes."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Annotated

import typer

from flowloom.app.cli.common import LogLevel, configured, fail
from flowloom.app.tuning import collect_from_here

if TYPE_CHECKING:
    from fastapi import FastAPI


def serve(host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port")] = 8000,
          processes: Annotated[int, typer.Option(
              "--processes", min=1, max=64, help="Server processes sharing the port.")] = 1,
          log_level: LogLevel = None,
          ) -> None:
    """Serve the HTTP API (documented at /docs). Logs JSON lines on stderr (readable
    ones on a terminal), with an access line per request."""
    settings = configured(log_level, default_level="info")
    import uvicorn

    from flowloom.app.api.edge import server_options
    from flowloom.app.api.main import create_app

    collect_from_here()  # main() held collection; with --processes this one only watches
    if processes > 1:  # each process builds its own app from the same environment
        os.environ["FLOWLOOM_LOG_LEVEL"] = logging.getLevelName(logging.root.level).lower()
        uvicorn.run("flowloom.app.cli.service:served_app", factory=True, host=host,
                    port=port, workers=processes, log_config=None, access_log=False,
                    **server_options(settings.request_head_timeout_s))
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None,
                    access_log=False, **server_options(settings.request_head_timeout_s))


def served_app() -> FastAPI:
    """The app of one of several server processes, logging as their parent does."""
    from flowloom.app.api.main import create_app

    return create_app(configured(default_level="info"))


def worker(log_level: LogLevel = None) -> None:
    """Run queued workflows from FLOWLOOM_QUEUE_URL (start as many as you like). Logs
    as `serve` does."""
    settings = configured(log_level, default_level="info")
    if not settings.queue_url:
        raise fail("FLOWLOOM_QUEUE_URL is not set: there is no queue to work on", 2)
    from flowloom.app.queue import make_worker

    collect_from_here()  # main() held collection while the command's modules loaded
    make_worker(settings).run()
