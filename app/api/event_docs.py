"""How the OpenAPI document describes `GET /executions/{id}/events`: a text/event-stream
whose events carry one JSON run event each, with a schema per kind (graphs/events.py)."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import TypeAdapter

from flowloom.graphs.events import Recorded, RunEvent

REF = "#/components/schemas/{model}"
KIND_REF = "#/components/schemas/RunEvent.{model}"  # RunEvent.NodeStarted, ...
EXAMPLE = (
    'event: run.started\nid: 1\ndata: {"seq": 1, "execution_id": "3f2a", "at": '
    '1767225600.0, "event": "run.started"}\n\n'
    'event: node.started\nid: 2\ndata: {"seq": 2, "execution_id": "3f2a", "event": '
    '"node.started", "node_id": "greet", "attempt": 1, "at": 1767225600.01}\n\n'
    'event: node.succeeded\nid: 3\ndata: {"seq": 3, "execution_id": "3f2a", "event": '
    '"node.succeeded", "node_id": "greet", "attempt": 1, "at": 1767225600.02, '
    '"output": "Hello, Ada!", "meta": {}}\n\n'
    'event: run.finished\nid: 4\ndata: {"seq": 4, "execution_id": "3f2a", "at": '
    '1767225600.03, "event": "run.finished", "status": "succeeded"}\n\n')

EVENTS_RESPONSES: dict[int | str, dict[str, Any]] = {200: {
    "description": (
        "Server-Sent Events, one per run event in order: `event:` its kind, `id:` its "
        "`seq` (send it back as `Last-Event-ID` to continue after it), `data:` the event "
        "as one JSON object (schema `RunEvent`). A late subscriber first gets what "
        "already happened; the stream ends after `run.finished`, and stays open while the "
        "run waits for an approval. A `: ping` comment comes every 15 s."),
    "content": {"text/event-stream": {
        "schema": {"type": "string"}, "example": EXAMPLE,
        "x-event-data": {"$ref": REF.format(model="RunEvent")}}}}}


def event_schemas() -> dict[str, Any]:
    """`RunEvent` and one schema per kind, for the OpenAPI document's components."""
    kinds = TypeAdapter(RunEvent).json_schema(ref_template=KIND_REF)["$defs"]
    schemas: dict[str, Any] = {f"RunEvent.{name}": kind for name, kind in kinds.items()}
    schemas["RunEvent.Recorded"] = {**TypeAdapter(Recorded).json_schema(), "description": (
        "What every stored event carries besides its kind's fields (and `at`, when the "
        "kind has none of its own).")}
    schemas["RunEvent"] = {"title": "RunEvent", "description": (
        "The `data` of one Server-Sent Event: an event of one of these kinds, told apart "
        "by `event`."), "oneOf": [
        {"allOf": [{"$ref": KIND_REF.format(model="Recorded")},
                   {"$ref": KIND_REF.format(model=kind.__name__)}]}
        for kind in get_args(RunEvent)]}
    return schemas
