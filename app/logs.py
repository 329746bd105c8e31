"""Log lines: one format for `serve`, `worker` and the CLI, each line carrying the
correlation id of the request or run it belongs to (http-api.md)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

LEVELS = ("debug", "info", "warning", "error", "critical")
correlation_id: ContextVar[str | None] = ContextVar("flowloom_correlation_id", default=None)
# What every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "correlation_id", "taskName"}


@contextmanager
def bound_correlation_id(value: str | None) -> Iterator[None]:
    """Log lines inside carry `value` (nothing changes when it is None)."""
    if value is None:
        yield
        return
    token = correlation_id.set(value)
    try:
        yield
    finally:
        correlation_id.reset(token)


def install_record_factory() -> None:
    """Every log record, Flowloom's and its libraries', carries the current correlation
    id as `correlation_id`. Installed once per process, on top of any other factory."""
    current = logging.getLogRecordFactory()
    if getattr(current, "flowloom", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        record.correlation_id = correlation_id.get()
        return record

    factory.flowloom = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record as the JSON object of its log line."""
    line: dict[str, Any] = {
        "at": logging.Formatter().formatTime(record), "level": record.levelname.lower(),
        "logger": record.name, "message": record.getMessage(),
        "correlation_id": getattr(record, "correlation_id", None)}
    line.update((k, v) for k, v in record.__dict__.items()
                if k not in _STANDARD and not k.startswith("_"))
    if record.exc_info:
        line["error"] = logging.Formatter().formatException(record.exc_info)
    return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: at, level, logger, message, correlation_id, and the
    record's extra fields (the access log's method, path, status, duration_ms)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record), default=str)


class ReadableFormatter(logging.Formatter):
    """The same line for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(correlation_id)s] "
                         "%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.__dict__.setdefault("correlation_id", None)
        return super().format(record)


def configure_logging(level: str, *, json_lines: bool | None = None) -> None:
    """Log to stderr at `level` (one of LEVELS): JSON lines, or readable ones when stderr
    is a terminal (`json_lines` decides when given)."""
    install_record_factory()
    handler = logging.StreamHandler()
    as_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if as_json else ReadableFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


__all__ = ["LEVELS", "JsonFormatter", "bound_correlation_id", "configure_logging",
           "correlation_id", "install_record_factory"]
