"""Which failures retry: 408, 429 and 5xx, network errors and timeouts; not other statuses,
and not a plain exception raised by a node (docs/semantics.md, `retry`)."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest

from flowloom.app.services import open_services
from flowloom.app.settings import Settings, load_settings
from flowloom.graphs.context import NodeContext
from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.registry import NODE_TYPES, register_node_type
from tests.conftest import Runner
from tests.nodes.test_http import FAST_RETRY, Web, http
from tests.servers import ModelStub, free_port
from tests.service_fixtures import ServiceRunner

RETRIABLE_STATUSES = [408, 429, 500, 501, 502, 503, 504, 505, 599]
FINAL_STATUSES = [400, 401, 403, 404, 405, 409, 410, 413, 422, 451]


def reason(code: int) -> str:
    """The status line's reason phrase, as the error shows it (none for unnamed codes)."""
    return f" {HTTPStatus(code).phrase}" if code in HTTPStatus._value2member_map_ else ""


def retrying_events(events: list[dict[str, Any]], node_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "node.retrying" and e["node_id"] == node_id]


@pytest.mark.parametrize("code", RETRIABLE_STATUSES)
async def test_http_status_that_is_retried(run_with: ServiceRunner, web: Web, code: int) -> None:
    server, base = web
    record = await run_with({"nodes": [http("h", f"{base}/status/{code}", retry=FAST_RETRY)]})
    assert record.status == "failed"
    assert len(server.hits[f"status{code}"]) == 3
    assert record.node_states["h"].attempts == 3
    assert [e["attempt"] for e in retrying_events(run_with.events, "h")] == [1, 2]
    assert record.node_states["h"].error == {
        "type": "HTTPStatusError",
        "message": f"node `h`: HTTP {code}{reason(code)} from GET "
                   f"{base}/status/{code}: status {code}"}


@pytest.mark.parametrize("code", FINAL_STATUSES)
async def test_http_status_that_fails_at_once(run_with: ServiceRunner, web: Web,
                                              code: int) -> None:
    server, base = web
    record = await run_with({"nodes": [http("h", f"{base}/status/{code}", retry=FAST_RETRY)]})
    assert record.status == "failed"
    assert len(server.hits[f"status{code}"]) == 1
    assert record.node_states["h"].attempts == 1
    assert retrying_events(run_with.events, "h") == []


async def test_http_connection_refused_is_retried(run_with: ServiceRunner) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"  # httpx.ConnectError
    record = await run_with({"nodes": [http("h", url, retry=FAST_RETRY)]})
    assert record.status == "failed"
    assert record.node_states["h"].attempts == 3
    assert [e["attempt"] for e in retrying_events(run_with.events, "h")] == [1, 2]
    error = record.node_states["h"].error
    assert error is not None and error["type"] == "NetworkError"
    assert error["message"].startswith(f"node `h`: GET {url} failed: ConnectError: ")


@pytest.mark.parametrize(("code", "calls"), [(408, 2), (429, 2), (500, 2), (503, 2),
                                             (400, 1), (401, 1), (404, 1), (422, 1)])
async def test_model_status_classification(run_with: ServiceRunner, model_stub: ModelStub,
                                           code: int, calls: int) -> None:
    model_stub.script = [("status", code)]
    doc = {"nodes": [{"id": "ask", "type": "ai", "retry": FAST_RETRY,
                      "config": {"prompt": "hi", "cache": False}}]}
    record = await run_with(doc)
    assert model_stub.calls == calls
    assert record.node_states["ask"].attempts == calls
    assert record.status == ("succeeded" if calls == 2 else "failed")


@pytest.fixture
def unreachable_model(node_settings: Settings) -> Settings:
    return load_settings(**{**node_settings.model_dump(),
                            "openai_base_url": f"http://127.0.0.1:{free_port()}/v1"})


async def test_model_connection_error_is_retried(run: Runner,
                                                 unreachable_model: Settings) -> None:
    doc = {"nodes": [{"id": "ask", "type": "ai", "retry": FAST_RETRY,
                      "config": {"prompt": "hi", "cache": False}}]}
    async with open_services(unreachable_model) as services:  # openai.APIConnectionError
        record = await run(doc, services=services)
    assert record.status == "failed"
    assert record.node_states["ask"].attempts == 3
    assert [e["attempt"] for e in retrying_events(run.events, "ask")] == [1, 2]
    error = record.node_states["ask"].error
    assert error is not None and error["type"] == "NetworkError"
    endpoint = unreachable_model.openai_base_url
    assert error["message"].startswith(
        f"node `ask`: cannot reach the model endpoint {endpoint}: ")


class _Raises(NodeType):
    """Raises what its test hands it, counting its calls."""

    name = "test_raises"
    Config = NodeConfig
    error: BaseException = ValueError("bad value")
    calls = 0

    async def run(self, config: Any, ctx: NodeContext[Any]) -> Any:
        type(self).calls += 1
        raise type(self).error


@pytest.fixture
def raising() -> Iterator[type[_Raises]]:
    _Raises.calls = 0
    register_node_type(_Raises())
    yield _Raises
    NODE_TYPES.pop(_Raises.name)


async def test_a_plain_exception_from_a_node_is_not_retried(
        run: Runner, raising: type[_Raises]) -> None:
    raising.error = ValueError("bad value")
    record = await run({"nodes": [{"id": "x", "type": "test_raises", "retry": FAST_RETRY}]})
    assert record.status == "failed"
    assert raising.calls == 1
    assert record.node_states["x"].attempts == 1
    assert record.node_states["x"].error == {"type": "ValueError",
                                             "message": "node `x`: ValueError: bad value"}
    assert retrying_events(run.events, "x") == []


async def test_a_node_error_marked_retriable_is_retried(
        run: Runner, raising: type[_Raises]) -> None:
    raising.error = NodeError("flaky", retriable=True)
    record = await run({"nodes": [{"id": "x", "type": "test_raises", "retry": FAST_RETRY}]})
    assert record.status == "failed"
    assert raising.calls == 3
    assert record.node_states["x"].attempts == 3


async def test_a_node_error_not_marked_retriable_is_not_retried(
        run: Runner, raising: type[_Raises]) -> None:
    raising.error = NodeError("broken")
    record = await run({"nodes": [{"id": "x", "type": "test_raises", "retry": FAST_RETRY}]})
    assert record.status == "failed"
    assert raising.calls == 1
    assert record.node_states["x"].error == {"type": "NodeError",
                                             "message": "node `x`: broken"}


async def test_retrying_event_reports_the_capped_delay(run_with: ServiceRunner,
                                                       web: Web) -> None:
    server, base = web
    retry = {**FAST_RETRY, "max_delay_s": 0.3}
    record = await run_with({"nodes": [http("ra", f"{base}/retry-after?key=evcap&seconds=30",
                                            retry=retry)]})
    assert record.status == "succeeded" and len(server.hits["evcap"]) == 2
    assert [(e["attempt"], e["delay_s"]) for e in retrying_events(run_with.events, "ra")] == [
        (1, 0.3)]
