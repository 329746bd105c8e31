"""The `flowloom` command (cli-and-config.md). This module only wires the commands."""

from __future__ import annotations

import sys

import typer
from typer._click.core import Context
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from flowloom.app.cli import running, runs, service, workflows
from flowloom.app.cli.common import err
from flowloom.app.deferred_imports import defer_package_inits
from flowloom.app.tuning import hold_collection
from flowloom.graphs import WorkflowError

app = typer.Typer(help="Flowloom: run JSON workflow DAGs, durably.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
runs_app = typer.Typer(help="Run history.", no_args_is_help=True)
workflows_app = typer.Typer(help="The stored workflows.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(workflows_app, name="workflows")

app.command()(running.validate)
app.command()(running.run)
app.command()(running.resume)
app.command()(running.cancel)
app.command()(running.graph)
app.command()(service.serve)
app.command()(service.worker)
runs_app.command("list")(runs.list_runs)
runs_app.command("show")(runs.show)
runs_app.command("watch")(runs.watch)
workflows_app.command("list")(workflows.list_workflows)
workflows_app.command("push")(workflows.push)
workflows_app.command("show")(workflows.show)


def _subcommands(ctx: Context | None) -> list[str]:
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return [" ".join(names)] if names else []


def main() -> None:
    defer_package_inits()  # before any command loads LangGraph
    hold_collection()  # until the command has loaded its modules: common.run_sync
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()  # the help text, as for --help
        sys.exit(exc.exit_code)
    except UsageError as exc:  # one line, as every other refusal
        where = "".join(f"{name}: " for name in _subcommands(exc.ctx))
        # typer checks values with pydantic, whose messages start "Value error, "
        message = exc.format_message().replace("Value error, ", "")
        err.print(f"flowloom: {where}{message}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except ClickException as exc:
        err.print(f"flowloom: {exc.format_message()}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except WorkflowError as exc:  # a store problem: one line, no traceback
        err.print(f"flowloom: {exc}", markup=False, highlight=False)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
