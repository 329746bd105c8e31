"""The `flowloom` command (cli-and-config.md)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from flowloom.app.records import RunRecord
from flowloom.app.runner import (
    NotResumable,
    RunNotFound,
    execute_workflow_async,
    resume_workflow,
    run_sync,
)
from flowloom.app.settings import load_settings
from flowloom.app.stores import open_store
from flowloom.app.stores.base import RunQuery
from flowloom.app.workflows import load_workflow, to_mermaid, validate_workflow
from flowloom.graphs import InputError, SpecError, WorkflowError
from flowloom.graphs.loader import read_document

app = typer.Typer(help="Flowloom: run JSON workflow DAGs, durably.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
runs_app = typer.Typer(help="Run history.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

err = Console(stderr=True, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
EXIT_STATUS = {"succeeded": 0, "failed": 1, "cancelled": 1, "waiting": 3}
STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow",
                "skipped": "dim", "running": "cyan", "retrying": "magenta", "waiting": "blue",
                "queued": "default"}

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"flowloom: {message}", markup=False, highlight=False)
    return typer.Exit(code)


def _read(file: Path) -> dict[str, Any]:
    try:
        return read_document(file)
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}", 2) from None
    except SpecError as exc:
        raise fail(f"{file}: {exc.problems[0]}", 1) from None


def _parse_inputs(pairs: list[str], inputs_json: str | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if inputs_json is not None:
        try:
            text = (Path(inputs_json[1:]).read_text(encoding="utf-8")
                    if inputs_json.startswith("@") else inputs_json)
            parsed = json.loads(text)
        except OSError as exc:
            raise fail(f"--inputs: cannot read {inputs_json[1:]}: {exc.strerror}", 2) from None
        except json.JSONDecodeError as exc:
            raise fail(f"--inputs: not valid JSON: {exc.msg} (column {exc.colno})", 2) from None
        if not isinstance(parsed, dict):
            raise fail("--inputs: must be a JSON object", 2)
        inputs.update(parsed)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise fail(f"--input {pair!r}: expected KEY=VALUE", 2)
        try:
            inputs[key] = json.loads(raw)
        except json.JSONDecodeError:
            inputs[key] = raw  # a bare word is a string
    return inputs


@app.command()
def validate(file: Path, as_json: JsonFlag = False) -> None:
    """Validate a workflow document (any dialect). Exit 1 when invalid."""
    document = _read(file)
    problems = validate_workflow(document, include_warnings=True)
    errors = [p for p in problems if p.level == "error"]
    if as_json:
        print(json.dumps({"valid": not errors, "problems": [p.as_dict() for p in problems]}))
    else:
        for problem in problems:
            style = "red" if problem.level == "error" else "yellow"
            err.print(f"[{style}]{problem.level}[/] {problem.path}: ", end="")
            err.print(problem.message, markup=False, highlight=False)
        if not errors:
            out.print(f"{file}: valid")
    raise typer.Exit(1 if errors else 0)


@app.command()
def graph(file: Path) -> None:
    """Print the workflow's graph as Mermaid text."""
    try:
        spec = load_workflow(_read(file))
    except SpecError as exc:
        raise fail(f"{file}: {exc.problems[0]} (run `flowloom validate`)", 1) from None
    sys.stdout.write(to_mermaid(spec))


class Progress:
    """A live table of node states while a run goes, on a terminal."""

    def __init__(self) -> None:
        self.states: dict[str, tuple[str, str]] = {}
        self.live = Live(self._table(), console=err, refresh_per_second=8, transient=True)

    def _table(self) -> Table:
        table = Table(box=None, show_header=False)
        for node_id, (status, note) in self.states.items():
            table.add_row(node_id, f"[{STATUS_STYLE.get(status, 'default')}]{status}[/]", note)
        return table

    def on_event(self, event: dict[str, Any]) -> None:
        kind, node_id = event["event"], event.get("node_id")
        if node_id and kind.startswith("node."):
            note = f"attempt {event['attempt']}" if event.get("attempt", 1) > 1 else ""
            status = kind.removeprefix("node.")
            self.states[node_id] = ("running" if status == "started" else status, note)
            self.live.update(self._table())


def _summary(record: RunRecord) -> None:
    style = STATUS_STYLE.get(record.status, "default")
    out.print(f"run {record.execution_id}: [{style}]{record.status}[/]")
    table = Table(box=None, show_header=True, header_style="bold")
    for col in ("node", "status", "attempts", "ms", "error"):
        table.add_column(col)
    for node_id, state in record.node_states.items():
        table.add_row(node_id, f"[{STATUS_STYLE.get(state.status, 'default')}]{state.status}[/]",
                      str(state.attempts or ""), f"{state.latency_ms or ''}",
                      (state.error or {}).get("message", ""))
    out.print(table)
    if record.status == "succeeded":
        out.print_json(json.dumps(record.output, default=str))
    for error in record.errors:
        err.print(f"error: {error.message}", markup=False, highlight=False)


def _report(record: RunRecord, as_json: bool) -> None:
    if as_json:
        print(record.model_dump_json(indent=2))
    else:
        _summary(record)
    raise typer.Exit(EXIT_STATUS.get(record.status, 1))


@app.command()
def run(
    file: Path,
    input_pairs: Annotated[list[str] | None, typer.Option(
        "--input", help="An input as KEY=VALUE (VALUE parsed as JSON when it is).")] = None,
    inputs_json: Annotated[str | None, typer.Option(
        "--inputs", help="All inputs as a JSON object, or @file.json.")] = None,
    execution_id: Annotated[str | None, typer.Option("--execution-id")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a workflow in this process to the end, against the configured store."""
    document = _read(file)
    inputs = _parse_inputs(input_pairs or [], inputs_json)
    try:
        settings = load_settings()
    except WorkflowError as exc:
        raise fail(str(exc), 2) from None
    try:
        record = _with_progress(as_json, lambda on_event: execute_workflow_async(
            document, inputs, execution_id=execution_id, settings=settings, on_event=on_event))
    except SpecError as exc:
        more = f" (and {len(exc.problems) - 1} more; run `flowloom validate`)" if len(
            exc.problems) > 1 else ""
        raise fail(f"invalid workflow {file}: {exc.problems[0]}{more}", 1) from None
    except InputError as exc:
        raise fail(f"bad inputs: {exc}", 1) from None
    except WorkflowError as exc:
        raise fail(str(exc), 1) from None
    _report(record, as_json)


def _with_progress(as_json: bool, start: Any) -> RunRecord:
    """Run `start(on_event)` with a live node table on a terminal, without one otherwise."""
    if not err.is_terminal or as_json:
        return run_sync(start(None))  # type: ignore[no-any-return]
    progress = Progress()
    with progress.live:
        return run_sync(start(progress.on_event))  # type: ignore[no-any-return]


@app.command()
def resume(
    execution_id: str,
    value: Annotated[str | None, typer.Option(
        "--value", help="The answer to a waiting approval, as JSON.")] = None,
    node: Annotated[str | None, typer.Option(
        "--node", help="Which approval to answer when several wait.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Continue a run from its last checkpoint (after a crash, a failure or an approval)."""
    answer: Any = ...
    if value is not None:
        try:
            answer = json.loads(value)
        except json.JSONDecodeError:
            answer = value  # a bare word is a string
    kwargs: dict[str, Any] = {"node_id": node}
    if answer is not ...:
        kwargs["value"] = answer
    try:
        # The user resumes a `running` run because its process stopped: take it over.
        record = _with_progress(as_json, lambda on_event: resume_workflow(
            execution_id, on_event=on_event, take_over=True, **kwargs))
    except InputError as exc:
        raise fail(f"bad value: {exc}; the run keeps waiting", 1) from None
    except (NotResumable, RunNotFound) as exc:
        raise fail(str(exc), 1) from None
    _report(record, as_json)


async def _with_store(action: Any) -> Any:
    store = open_store(load_settings())
    try:
        return await action(store)
    finally:
        await store.close()


@runs_app.command("show")
def runs_show(execution_id: str, as_json: JsonFlag = False) -> None:
    """One run record, as GET /executions/{id}."""
    record = run_sync(_with_store(lambda s: s.get_run(execution_id)))
    if record is None:
        raise fail(f"no run with execution id `{execution_id}`", 1)
    if as_json:
        print(record.model_dump_json(indent=2))
    else:
        _summary(record)


@runs_app.command("list")
def runs_list(
    workflow: Annotated[str | None, typer.Option("--workflow")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Run history, newest first."""
    page = run_sync(_with_store(
        lambda s: s.list_runs(RunQuery(workflow_id=workflow, status=status, limit=limit))))
    records = page.runs
    if as_json:
        print(json.dumps([r.model_dump(mode="json", exclude={"node_states", "logs"})
                          for r in records]))
        return
    table = Table(box=None, header_style="bold")
    for col in ("execution id", "workflow", "version", "status", "created"):
        table.add_column(col)
    for r in records:
        table.add_row(r.execution_id, r.workflow_id or "", str(r.workflow_version or ""),
                      f"[{STATUS_STYLE.get(r.status, 'default')}]{r.status}[/]",
                      r.created_at.isoformat(timespec="seconds"))
    out.print(table)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"at": self.formatTime(record), "level": record.levelname.lower(),
                           "logger": record.name, "message": record.getMessage(),
                           "correlation_id": getattr(record, "correlation_id", None)})


@app.command()
def serve(host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port")] = 8000,
          processes: Annotated[int, typer.Option(
              "--processes", min=1, max=64, help="Server processes sharing the port.")] = 1,
          ) -> None:
    """Serve the HTTP API (documented at /docs)."""
    import uvicorn

    from flowloom.app.api.main import create_app
    from flowloom.app.api.middleware import log_record_factory

    try:
        settings = load_settings()
    except WorkflowError as exc:
        raise fail(str(exc), 2) from None
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


@app.command()
def worker() -> None:
    """Run queued workflows from FLOWLOOM_QUEUE_URL (start as many as you like)."""
    from flowloom.app.queue import make_worker

    try:
        settings = load_settings()
        if not settings.queue_url:
            raise fail("FLOWLOOM_QUEUE_URL is not set: there is no queue to work on", 2)
    except WorkflowError as exc:
        raise fail(str(exc), 2) from None
    logging.basicConfig(level=logging.INFO, force=True)
    make_worker(settings).run()


def main() -> None:
    try:
        app()
    except WorkflowError as exc:  # a store or settings problem: one line, no traceback
        err.print(f"flowloom: {exc}", markup=False, highlight=False)
        sys.exit(2)
if __name__ == "__main__":
    main()
