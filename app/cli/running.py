"""validate, graph, run, resume and cancel."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowloom.app.cli.common import (
    EXIT_STATUS,
    ExecutionId,
    ExecutionIdOption,
    JsonFlag,
    configured,
    err,
    fail,
    out,
    read_file,
    run_sync,
)
from flowloom.app.cli.render import Progress, summary
from flowloom.graphs import InputError, SpecError, WorkflowError

if TYPE_CHECKING:  # the runner loads LangGraph and the clients: run, resume, cancel only
    from flowloom.app.records import RunRecord


def validate(file: Path, as_json: JsonFlag = False) -> None:
    """Validate a workflow document (any dialect). Exit 1 when invalid, 2 unreadable."""
    from flowloom.app.workflows import validate_workflow  # the node types: not for --help

    document = read_file(file)
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


def graph(file: Path) -> None:
    """Print the workflow's graph as Mermaid text."""
    from flowloom.app.workflows import load_workflow, to_mermaid

    try:
        spec = load_workflow(read_file(file))
    except SpecError as exc:
        raise fail(f"{file}: {exc.problems[0]} (run `flowloom validate`)", 1) from None
    sys.stdout.write(to_mermaid(spec))


def parse_inputs(pairs: list[str],
                 inputs_json: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The inputs, and the text of each --input whose value JSON read as other than a
    string."""
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
    typed: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise fail(f"--input {pair!r}: expected KEY=VALUE", 2)
        try:
            inputs[key] = json.loads(raw)
        except json.JSONDecodeError:
            inputs[key] = raw  # a bare word is a string
        typed.pop(key, None)
        if not isinstance(inputs[key], str):
            typed[key] = raw
    return inputs, typed


def _string_hint(exc: InputError, typed: dict[str, str]) -> str:
    """How to pass a value as a string, when --input read it as a number or the like and
    the schema wanted a string there."""
    key = exc.path.removeprefix("$.")
    if key not in typed or "'string'" not in exc.message:
        return ""
    return f" (to pass the string, write --input {key}={shlex.quote(json.dumps(typed[key]))})"


def run(
    file: Path,
    input_pairs: Annotated[list[str] | None, typer.Option(
        "--input", help="An input as KEY=VALUE (VALUE parsed as JSON when it is).")] = None,
    inputs_json: Annotated[str | None, typer.Option(
        "--inputs", help="All inputs as a JSON object, or @file.json.")] = None,
    execution_id: ExecutionIdOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a workflow in this process to the end, against the configured store."""
    from flowloom.app.runner import execute_workflow_async

    document = read_file(file)
    inputs, typed = parse_inputs(input_pairs or [], inputs_json)
    settings = configured()
    try:
        record = _with_progress(as_json, lambda on_event: execute_workflow_async(
            document, inputs, execution_id=execution_id, settings=settings, on_event=on_event))
    except SpecError as exc:
        more = f" (and {len(exc.problems) - 1} more; run `flowloom validate`)" if len(
            exc.problems) > 1 else ""
        raise fail(f"invalid workflow {file}: {exc.problems[0]}{more}", 1) from None
    except InputError as exc:
        raise fail(f"bad inputs: {exc}{_string_hint(exc, typed)}", 1) from None
    except WorkflowError as exc:
        raise fail(str(exc), 1) from None
    report(record, as_json)


def report(record: RunRecord, as_json: bool) -> None:
    if as_json:
        print(record.model_dump_json(indent=2))
    else:
        summary(record)
    raise typer.Exit(EXIT_STATUS.get(record.status, 1))


def _with_progress(as_json: bool, start: Any) -> RunRecord:
    """Run `start(on_event)` with a live node table on a terminal, without one otherwise."""
    if not err.is_terminal or as_json:
        return run_sync(start(None))  # type: ignore[no-any-return]
    progress = Progress()
    with progress.live:
        return run_sync(start(progress.on_event))  # type: ignore[no-any-return]


def resume(
    execution_id: ExecutionId,
    value: Annotated[str | None, typer.Option(
        "--value", help="The answer to a waiting approval, as JSON.")] = None,
    node: Annotated[str | None, typer.Option(
        "--node", help="Which approval to answer when several wait.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Take over a `running` run whose record is still fresh: only when "
                        "you know the process running it is gone.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Continue a run from its last checkpoint (after a crash, a failure or an approval)."""
    from flowloom.app.cli.render import answer_command
    from flowloom.app.runner import AnswerError, NotResumable, RunNotFound, resume_workflow

    answer: Any = ...
    if value is not None:
        try:
            answer = json.loads(value)
        except json.JSONDecodeError:
            answer = value  # a bare word is a string
    kwargs: dict[str, Any] = {"node_id": node, "settings": configured()}
    if answer is not ...:
        kwargs["value"] = answer
    try:
        # A `running` run is taken over once its record is stale (its process stopped).
        record = _with_progress(as_json, lambda on_event: resume_workflow(
            execution_id, on_event=on_event, take_over=True, force=force, **kwargs))
    except AnswerError as exc:
        raise fail(f"{exc}; the run keeps waiting: "
                   f"{answer_command(execution_id, exc.node_id)}", 1) from None
    except (NotResumable, RunNotFound) as exc:
        raise fail(str(exc), 1) from None
    report(record, as_json)


def cancel(execution_id: ExecutionId) -> None:
    """Stop a queued, running or waiting run, and its child runs."""
    from flowloom.app.runner import NotResumable, RunNotFound, cancel_workflow

    settings = configured()
    try:
        record = run_sync(cancel_workflow(execution_id, by="cli", settings=settings))
    except (NotResumable, RunNotFound) as exc:
        raise fail(str(exc), 1) from None
    if record.status == "cancelled":
        out.print(f"run {execution_id}: cancelled", markup=False)
    else:  # its process notices within a second
        out.print(f"run {execution_id}: cancel requested; it stops at its next step",
                  markup=False)
