"""A foreach's checkpoints grow linearly with its items: each item and each result is
written a bounded number of times, however many chunks the items take (bytes, not time)."""

from __future__ import annotations

import sqlite3

import pytest

from flowloom.graphs import loops
from tests.conftest import Runner


def document(tag: str) -> dict[str, object]:
    body = {"nodes": [{"id": "line", "type": "transform",
                       "config": {"output": "{{ item }}-{{ before | length }}"}}]}
    return {"name": tag, "nodes": [
        {"id": "before", "type": "transform", "config": {"output": "{{ inputs.pad }}"}},
        {"id": "each", "type": "foreach", "config": {"items": "range(inputs.n) | list",
                                                      "body": body}},
        {"id": "count", "type": "transform", "config": {"output": "{{ each | length }}"}}],
        "edges": [{"source": "before", "target": "each"}, {"source": "each", "target": "count"}]}


def checkpoint_bytes(run: Runner, execution_id: str) -> int:
    """Checkpoints, their metadata and pending writes of one run, subgraphs included."""
    assert run.settings.sqlite_path is not None
    with sqlite3.connect(run.settings.sqlite_path) as db:
        (saved,) = db.execute("SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0)"
                              " FROM checkpoints WHERE thread_id = ?", (execution_id,)).fetchone()
        (written,) = db.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes "
                                "WHERE thread_id = ?", (execution_id,)).fetchone()
    return int(saved) + int(written)


async def bytes_per_item(run: Runner, tag: str, n: int, pad: int = 40) -> float:
    record = await run(document(tag), {"n": n, "pad": "x" * pad})
    assert record.status == "succeeded" and record.output == n
    return checkpoint_bytes(run, record.execution_id) / n


async def test_bytes_per_item_stay_flat_from_500_to_2000_items(run: Runner) -> None:
    small = await bytes_per_item(run, "flat", 500)
    large = await bytes_per_item(run, "flat", 2000)
    assert large <= 1.5 * small, (small, large)


async def test_many_chunks_write_no_item_twice(run: Runner,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of 25 items: 2,000 items take 80 of them, and still cost what 200 items do.
    monkeypatch.setattr(loops, "WAVE_MIN", 25)
    monkeypatch.setattr(loops, "WAVE_PER_SLOT", 1)
    small = await bytes_per_item(run, "chunks", 200)
    large = await bytes_per_item(run, "chunks", 2000)
    assert large <= 1.5 * small, (small, large)


async def test_outer_names_are_written_once_a_chunk_not_once_an_item(run: Runner) -> None:
    # 20 KB in the inputs and in `before`'s output, which every item could read: the
    # checkpoints hold them once a step and once a chunk, never once an item (40 KB each)
    small = await bytes_per_item(run, "outer", 1000, pad=40)
    large = await bytes_per_item(run, "outer", 1000, pad=20_000)
    assert large - small < 1_000, (small, large)
