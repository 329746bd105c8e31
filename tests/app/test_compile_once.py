"""A workflow's content validates, compiles and compiles its templates once per process:
runs after the first reuse all three (counts, never times)."""

from __future__ import annotations

from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import pytest

from flowloom.app import execution
from flowloom.app.runner import execute_workflow_async, resume_workflow
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.graphs.expressions import Expressions
from tests.conftest import Runner, t

DOCUMENT: dict[str, Any] = {
    "nodes": [
        {"id": "double", "type": "transform", "config": {"output": "{{ inputs.n * 2 }}"}},
        {"id": "big", "type": "condition", "config": {"expression": "double > 5"}},
        {"id": "each", "type": "foreach", "config": {
            "items": "range(inputs.n) | list", "body": {"nodes": [
                {"id": "sq", "type": "transform", "config": {"output": "{{ item * item }}"}},
            ]}}},
        {"id": "end", "type": "end", "config": {
            "output": {"double": "{{ double }}", "each": "{{ each }}"}}},
    ],
    "edges": [{"source": "double", "target": "big"},
              {"source": "big", "target": "each", "branch": "true"},
              {"source": "big", "target": "end", "branch": "false"},
              {"source": "each", "target": "end"}],
}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Fresh caches, and a count of every validation, graph compile and template compile."""
    counts: Counter[str] = Counter()
    monkeypatch.setattr(execution, "_SPECS", OrderedDict())
    monkeypatch.setattr(execution, "_GRAPHS", OrderedDict())
    monkeypatch.setattr(execution, "_BY_CONTENT", OrderedDict())
    load, compile_graph = execution.load_workflow, execution.compile_workflow
    compile_template = Expressions._compile

    def counting_load(document: Any) -> Any:
        counts["load"] += 1
        return load(document)

    def counting_compile(*args: Any, **kwargs: Any) -> Any:
        counts["graph"] += 1
        return compile_graph(*args, **kwargs)

    def counting_template(self: Expressions, text: str, expression: bool) -> Any:
        if (text, expression) not in self._compiled:
            counts["template"] += 1
        return compile_template(self, text, expression)

    monkeypatch.setattr(execution, "load_workflow", counting_load)
    monkeypatch.setattr(execution, "compile_workflow", counting_compile)
    monkeypatch.setattr(Expressions, "_compile", counting_template)
    return counts


async def test_only_the_first_run_validates_and_compiles(run: Runner,
                                                         counted: Counter[str]) -> None:
    first = await run(DOCUMENT, {"n": 3})
    assert first.output == {"double": 6, "each": [0, 1, 4]}
    after_first = dict(counted)
    # double, big, items, sq, end's two fields: each text compiled once
    assert after_first == {"load": 1, "graph": 1, "template": 6}
    for n in (4, 5):  # other inputs, same document: nothing compiles again
        record = await run(dict(DOCUMENT), {"n": n})
        assert record.status == "succeeded"
    assert dict(counted) == after_first


async def test_another_document_compiles_its_own(run: Runner, counted: Counter[str]) -> None:
    await run(DOCUMENT, {"n": 3})
    other = {**DOCUMENT, "name": "renamed"}
    await run(other, {"n": 3})
    await run(other, {"n": 3})
    assert (counted["load"], counted["graph"]) == (2, 2)


async def test_a_resume_reuses_the_graph_of_its_run(run: Runner, counted: Counter[str]) -> None:
    document = {"nodes": [{"id": "ask", "type": "approval", "config": {"prompt": "ok?"}},
                          {"id": "echo", "type": "transform", "config": {"output": "{{ ask }}"}}],
                "edges": [{"source": "ask", "target": "echo"}]}
    waiting = await run(document)
    assert (waiting.status, counted["graph"]) == ("waiting", 1)
    done = await resume_workflow(waiting.execution_id, "yes", settings=run.settings,
                                 store=run.store)
    assert (done.status, done.output) == ("succeeded", "yes")
    assert counted["graph"] == 1  # the resume read the stored version: same graph


async def test_a_graph_made_for_another_store_is_copied_only_for_the_same_content(
        tmp_path: Path, counted: Counter[str]) -> None:
    """Two stores each hold a workflow `w` version 1, of other content: each runs its own
    graph; the same content on a second store runs a copy of the first graph."""
    first, second = SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")
    one = {"id": "w", "nodes": [t("a", "{{ inputs.n + 1 }}")]}
    two = {"id": "w", "nodes": [t("a", "{{ inputs.n + 2 }}")]}
    try:
        runs = [await execute_workflow_async(doc, {"n": 1}, store=store)
                for doc, store in ((one, first), (two, second), (one, second))]
    finally:
        await first.close()
        await second.close()
    assert [(r.workflow_id, r.workflow_version, r.output) for r in runs] == [
        ("w", 1, 2), ("w", 1, 3), (runs[2].workflow_id, 1, 2)]
    assert counted["graph"] == 2  # `one` on the second store: a copy, not a compile


async def test_the_workflow_output_shares_the_templates_of_its_graph(
        run: Runner, counted: Counter[str]) -> None:
    document = {"nodes": [t("a", "{{ inputs.n * 2 }}")], "output": "{{ inputs.n * 2 }}"}
    assert (await run(document, {"n": 4})).output == 8
    assert (counted["graph"], counted["template"]) == (1, 1)  # one text, compiled once
