"""MAX_VALUE_DEPTH at every door: inputs, approval answers and node outputs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.app.api.main import create_app
from flowloom.app.runner import MAX_INPUT_BYTES
from flowloom.app.settings import load_settings
from flowloom.app.stores.base import RunQuery
from flowloom.graphs import InputError
from flowloom.graphs.context import NodeContext
from flowloom.graphs.limits import MAX_VALUE_DEPTH
from flowloom.graphs.nodetype import NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from tests.conftest import Runner, chain, t
from tests.graphs.test_limits import nested

DEEPEST_PATH = "$" + ".a" * MAX_VALUE_DEPTH  # the first level past the limit in nested()
ECHO = {"nodes": [t("echo", "{{ inputs }}")]}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(load_settings(store=f"sqlite:///{tmp_path / 'api.db'}"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def test_inputs_at_the_depth_limit_run_and_one_more_level_is_refused(
        run: Runner) -> None:
    deepest = nested(MAX_VALUE_DEPTH)
    record = await run(ECHO, deepest)
    assert record.status == "succeeded" and record.output == deepest
    with pytest.raises(InputError) as info:
        await run(ECHO, nested(MAX_VALUE_DEPTH + 1))
    assert info.value.path == DEEPEST_PATH
    assert str(info.value).startswith("inputs" + DEEPEST_PATH[1:] + ": nested deeper than 64")
    page = await run.store.list_runs(RunQuery())
    assert [r.execution_id for r in page.runs] == [record.execution_id]  # nothing stored


async def test_over_http_the_deepest_inputs_read_back_and_deeper_is_422(
        api: httpx.AsyncClient) -> None:
    deepest = nested(MAX_VALUE_DEPTH)
    response = await api.post("/execute", json={"workflow": ECHO, "inputs": deepest})
    assert response.status_code == 200 and response.json()["output"] == deepest
    run_id = response.json()["execution_id"]
    one = (await api.get(f"/executions/{run_id}")).json()
    assert one["inputs"] == deepest and one["node_states"]["echo"]["output"] == deepest
    listed = (await api.get("/executions")).json()["items"]
    assert [(r["execution_id"], r["inputs"]) for r in listed] == [(run_id, deepest)]
    refused = await api.post("/execute", json={"workflow": ECHO,
                                               "inputs": nested(MAX_VALUE_DEPTH + 1)})
    assert refused.status_code == 422
    assert refused.json()["problems"][0]["path"] == DEEPEST_PATH
    assert refused.json()["detail"].startswith("inputs" + DEEPEST_PATH[1:])
    assert len((await api.get("/executions")).json()["items"]) == 1


async def test_approval_answers_have_the_depth_and_size_limits(
        api: httpx.AsyncClient) -> None:
    doc = {"nodes": [{"id": "ok", "type": "approval", "config": {"prompt": "Data?"}},
                     t("after", "{{ ok }}")], "edges": chain("ok", "after")}
    run_id = (await api.post("/execute", json={"workflow": doc})).json()["execution_id"]
    deep = await api.post(f"/executions/{run_id}/resume",
                          json={"value": nested(MAX_VALUE_DEPTH + 1)})
    assert deep.status_code == 422
    assert deep.json()["problems"] == [{"path": DEEPEST_PATH, "message": (
        "answer to approval `ok`: nested deeper than 64 levels; the limit is MAX_VALUE_DEPTH=64")}]
    big = await api.post(f"/executions/{run_id}/resume",
                         json={"value": "x" * MAX_INPUT_BYTES})
    assert big.status_code == 422
    assert big.json()["problems"][0]["message"] == (
        f"answer to approval `ok`: {MAX_INPUT_BYTES + 2:,} bytes; the limit is {MAX_INPUT_BYTES:,}")
    assert (await api.get(f"/executions/{run_id}")).json()["status"] == "waiting"
    done = await api.post(f"/executions/{run_id}/resume",
                          json={"value": nested(MAX_VALUE_DEPTH)})
    assert done.json()["status"] == "succeeded"
    assert done.json()["output"] == nested(MAX_VALUE_DEPTH)


async def test_a_while_nesting_its_last_output_fails_at_the_limit_and_the_store_reads_back(
        run: Runner) -> None:
    first = await run(ECHO, {"n": 1})
    body = {"nodes": [t("wrap", {"x": "{{ loop.last }}"})]}
    doc = {"nodes": [{"id": "w", "type": "while", "config": {
        "condition": "true", "max_iterations": 100, "body": body}}]}
    record = await run(doc)
    assert record.status == "failed"
    path = "$" + ".x" * MAX_VALUE_DEPTH
    assert record.errors[0].message == (
        f"node `w`: pass {MAX_VALUE_DEPTH} failed: node `wrap`: output at {path}: nested "
        "deeper than 64 levels; the limit is MAX_VALUE_DEPTH=64")
    assert record.errors[0].type == "LimitExceeded"
    after = await run(ECHO, {"n": 2})
    page = await run.store.list_runs(RunQuery())
    assert [r.execution_id for r in page.runs] == [
        after.execution_id, record.execution_id, first.execution_id]
    stored = await run.store.get_run(record.execution_id)
    assert stored is not None and stored.status == "failed"
    assert stored.node_states["w"].error == {
        "type": "LimitExceeded", "message": record.errors[0].message}
    assert stored.node_states[f"w[{MAX_VALUE_DEPTH - 1}].wrap"].output == _wrapped(
        MAX_VALUE_DEPTH)  # the deepest output a pass may give is kept and read back


def _wrapped(depth: int) -> Any:
    value: Any = None
    for _ in range(depth):
        value = {"x": value}
    return value



async def test_a_foreach_list_one_level_past_the_limit_fails_its_node(run: Runner) -> None:
    body = {"nodes": [t("same", "{{ item }}")]}
    doc = {"nodes": [{"id": "each", "type": "foreach", "config": {
        "items": "[inputs]", "body": body}}]}
    record = await run(doc, nested(MAX_VALUE_DEPTH))
    assert record.status == "failed"
    assert record.errors[0].message == (
        f"node `each`: output at {'$[0]' + '.a' * (MAX_VALUE_DEPTH - 1)}: nested deeper "
        "than 64 levels; the limit is MAX_VALUE_DEPTH=64")


async def test_an_output_rule_nesting_past_the_limit_is_cut_in_the_record(
        run: Runner) -> None:
    doc = {**ECHO, "output": {"wrapped": "{{ echo }}"}}
    record = await run(doc, nested(MAX_VALUE_DEPTH))
    assert record.status == "succeeded"
    assert record.output == {"truncated": True, "reason": (
        f"nested deeper than 64 levels at {'$.wrapped' + '.a' * (MAX_VALUE_DEPTH - 1)}")}
    stored = await run.store.get_run(record.execution_id)
    assert stored is not None and stored.output == record.output



class Emits(NodeType):
    """Outputs what an outside service might answer: a float from its text."""

    name = "test_emits"

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        return {"list": [float(config.value)]}


@pytest.fixture
def emits() -> Iterator[None]:
    register_node_type(Emits())
    yield
    NODE_TYPES.pop(Emits.name)


@pytest.mark.parametrize(("node", "why"), [
    ({"type": "test_emits", "config": {"value": "nan"}},
     "output at $.list[0]: nan is not a JSON number"),
    ({"type": "test_emits", "config": {"value": "-inf"}},
     "output at $.list[0]: -inf is not a JSON number"),
    ({"type": "transform", "config": {"output": "{{ 'a\\ud800' }}"}},
     "output at $: the text holds a lone surrogate, which is not valid Unicode"),
])
async def test_an_output_json_cannot_carry_fails_its_node(run: Runner, emits: None,
                                                          node: dict[str, Any],
                                                          why: str) -> None:
    record = await run({"nodes": [{"id": "bad", **node}, t("after", 1)],
                        "edges": [{"source": "bad", "target": "after"}]})
    assert record.status == "failed"
    error = record.node_states["bad"].error
    assert error is not None and error["type"] == "LimitExceeded"
    assert error["message"] == f"node `bad`: {why}"
    assert "after" not in record.node_states or record.node_states["after"].status != "succeeded"
