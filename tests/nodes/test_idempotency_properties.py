"""Idempotency keys, as a property: over random nestings of `foreach` and `while` loops
around an `http` node, every execution of the node sends a key of its own, written out
here from the loop indexes (never with the code under test), and a retried attempt sends
its first attempt's key again. Keys across resumes: tests/app/test_crash*.py."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowloom.app.runner import execute_workflow_async, run_sync
from flowloom.app.settings import load_settings
from tests.nodes.test_http import Web, http

NO_WAIT_RETRY = {"max_attempts": 2, "initial_delay_s": 0, "backoff": 1, "jitter": False}
node_ids = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,6}", fullmatch=True)
levels = st.lists(st.tuples(st.sampled_from(["foreach", "while"]), node_ids,
                            st.integers(1, 3)), min_size=1, max_size=3)
examples = itertools.count()


def nest(levels: list[tuple[str, str, int]], leaf: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"nodes": [leaf]}
    for kind, node_id, count in reversed(levels):
        config: dict[str, Any] = (
            {"items": f"range({count}) | list"} if kind == "foreach"
            else {"condition": "true", "max_iterations": count})
        body = {"nodes": [{"id": node_id, "type": kind, "config": {**config, "body": body}}]}
    return body


def expected_paths(levels: list[tuple[str, str, int]], leaf_id: str) -> set[str]:
    return {"".join(f"{node_id}[{i}]." for (_, node_id, _), i in zip(levels, indexes,
                                                                     strict=True)) + leaf_id
            for indexes in itertools.product(*(range(count) for _, _, count in levels))}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("idempotency")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(levels=levels, leaf_id=node_ids)
def test_every_execution_sends_its_own_key_and_a_retry_sends_it_again(
        web: Web, store_dir: Path, levels: list[tuple[str, str, int]], leaf_id: str) -> None:
    server, base = web
    example = next(examples)
    key, execution_id = f"prop{example}", f"exec-prop-{example}"
    leaf = http(leaf_id, f"{base}/flaky?key={key}&fail=1", method="POST",
                retry=NO_WAIT_RETRY)  # the first request of the example answers 503
    config = load_settings(store=f"sqlite:///{store_dir / 'runs.db'}", http_allow_private=True)
    record = run_sync(execute_workflow_async(nest(levels, leaf), execution_id=execution_id,
                                             settings=config))
    assert record.status == "succeeded", record.errors
    sent = Counter(hit["idempotency_key"] for hit in server.hits[key])
    paths = expected_paths(levels, leaf_id)
    assert set(sent) == {f"{execution_id}:{path}" for path in paths}
    assert sorted(sent.values()) == [1] * (len(paths) - 1) + [2]  # the retried one: twice
