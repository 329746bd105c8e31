"""What every command shares: the two consoles, one-line failures, settings, the store,
and the checks of ids and files."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:  # the stores and the runner load LangGraph: only their commands need it
    from flowloom.app.settings import Settings
    from flowloom.app.stores import Store

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
EXIT_STATUS = {"succeeded": 0, "failed": 1, "cancelled": 1, "waiting": 3}


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"flowloom: {message}", markup=False, highlight=False)
    return typer.Exit(code)


def configured(log_level: str | None = None, default_level: str = "warning") -> Settings:
    """The settings, or one line naming the bad variable and exit 2. Logging goes to
    stderr at `log_level` (a --log-level), else FLOWLOOM_LOG_LEVEL, else `default_level`:
    warnings only for the commands whose own output is on the terminal."""
    from flowloom.app.logs import configure_logging
    from flowloom.app.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise fail(str(exc), 2) from None
    configure_logging(log_level or settings.log_level or default_level)
    return settings


def _log_level(value: str | None) -> str | None:
    from flowloom.app.logs import LEVELS

    if value is not None and value.lower() not in LEVELS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(LEVELS)}")
    return value.lower() if value else None


LogLevel = Annotated[str | None, typer.Option(
    "--log-level", callback=_log_level, show_default=False,
    help="debug, info, warning, error or critical (default: FLOWLOOM_LOG_LEVEL, else info).")]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    from flowloom.app.runner import run_sync as run
    from flowloom.app.tuning import collect_from_here

    collect_from_here()  # main() held collection while the command's modules loaded
    return run(coro)


async def with_store(settings: Settings, action: Callable[[Store], Awaitable[T]]) -> T:
    from flowloom.app.stores import open_store

    store = open_store(settings)
    try:
        return await action(store)
    finally:
        await store.close()


def _execution_id(value: str | None) -> str | None:
    from flowloom.app.records import EXECUTION_ID_PATTERN

    if value is not None and not re.fullmatch(EXECUTION_ID_PATTERN, value):
        raise typer.BadParameter(
            f"{value!r} is not an execution id: letters, digits, _ . - [ ] (up to 512, "
            "not starting with . - [ ])")
    return value


ExecutionId = Annotated[str, typer.Argument(callback=_execution_id, metavar="EXECUTION_ID")]
ExecutionIdOption = Annotated[str | None, typer.Option(
    "--execution-id", callback=_execution_id, help="Choose the run's id.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def read_file(file: Path) -> dict[str, Any]:
    """The file's document; exit 2 when it cannot be read as JSON, 1 when it is not an
    object."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}", 2) from None
    except UnicodeDecodeError as exc:
        raise fail(f"cannot read {file}: not UTF-8 text ({exc.reason})", 2) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"cannot read {file}: not valid JSON: {exc.msg} at line {exc.lineno} "
                   f"column {exc.colno}", 2) from None
    if not isinstance(document, dict):
        raise fail(f"{file}: $: a workflow must be a JSON object", 1)
    return document
