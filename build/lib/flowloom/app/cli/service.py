"""serve and worker: the long-running processes."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer

from flowloom.app.cli.common import configured, fail


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"at": self.formatTime(record), "level": record.levelname.lower(),
                           "logger": record.name, "message": record.getMessage(),
                           "correlation_id": getattr(record, "correlation_id", None)})


def serve(host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port")] = 8000,
          processes: Annotated[int, typer.Option(
              "--processes", min=1, max=64, help="Server processes sharing the port.")] = 1,
          ) -> None:
    """Serve the HTTP API (documented at /docs)."""
    settings = configured()
    import uvicorn

    from flowloom.app.api.main import create_app
    from flowloom.app.api.middleware import log_record_factory

    logging.setLogRecordFactory(log_record_factory(logging.getLogRecordFactory()))
    handler = logging.StreamHandler()
    if not sys.stderr.isatty():  # structured logs for collectors, readable ones for people
        handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    if processes > 1:  # each process builds its own app from the same environment
        uvicorn.run("flowloom.app.api.main:create_app", factory=True, host=host, port=port,
                    workers=processes, log_config=None, access_log=False)
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None,
                    access_log=False)


def worker() -> None:
    """Run queued workflows from FLOWLOOM_QUEUE_URL (start as many as you like)."""
    settings = configured()
    if not settings.queue_url:
        raise fail("FLOWLOOM_QUEUE_URL is not set: there is no queue to work on", 2)
    from flowloom.app.queue import make_worker

    logging.basicConfig(level=logging.INFO, force=True)
    make_worker(settings).run()
