"""The ai node and its cache, against the OpenAI-compatible stub and a real Redis."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.app.llm_cache import LLM_KEY_PREFIX, MemoryLLMCache, RedisLLMCache
from flowloom.app.services import open_services
from flowloom.app.settings import Settings, load_settings
from flowloom.graphs.errors import NodeError
from flowloom.nodes.ai import request_digest
from flowloom.nodes.llm import OpenAIChat
from flowloom.nodes.services import Services
from tests.conftest import Runner, wait_until
from tests.servers import ModelStub, RedisProcess
from tests.service_fixtures import ServiceRunner

FAST_RETRY = {"max_attempts": 3, "initial_delay_s": 0.05, "backoff": 1, "jitter": False}


def ai(node_id: str = "ask", **config: Any) -> dict[str, Any]:
    extra = {k: config.pop(k) for k in ("retry", "timeout_s", "on_error") if k in config}
    return {"id": node_id, "type": "ai",
            "config": {"prompt": "Say hello to {{ inputs.name }}", **config}, **extra}


async def test_prompt_templating_and_node_state(run_with: ServiceRunner,
                                                model_stub: ModelStub) -> None:
    record = await run_with({"nodes": [ai(system_prompt="Be brief, {{ inputs.name }}",
                                          model="m1", temperature=0.2, max_tokens=50)]},
                            {"name": "Ada"})
    assert record.output == "echo: Say hello to Ada"
    sent = model_stub.requests[0]
    assert sent["messages"] == [{"role": "system", "content": "Be brief, Ada"},
                                {"role": "user", "content": "Say hello to Ada"}]
    assert (sent["model"], sent["temperature"], sent["max_completion_tokens"]) == ("m1", 0.2, 50)
    state = record.node_states["ask"]
    assert state.cached is False and state.model == "m1"
    assert state.usage == {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}
    assert state.latency_ms is not None


async def test_json_response_format(run_with: ServiceRunner, model_stub: ModelStub) -> None:
    record = await run_with({"nodes": [ai(response_format="json")]}, {"name": "Bo"})
    assert record.output == {"echo": "Say hello to Bo"}
    assert model_stub.requests[0]["response_format"] == {"type": "json_object"}


async def test_json_answer_that_is_not_json_fails_clearly_and_is_not_cached(
        run_with: ServiceRunner, model_stub: ModelStub) -> None:
    model_stub.script = [("text", "sure! here it is")]
    record = await run_with({"nodes": [ai(response_format="json")]}, {"name": "X"})
    assert record.status == "failed"
    assert record.errors[0].message == ("node `ask`: model answer is not JSON (Expecting value "
                                        "at column 1): 'sure! here it is'")
    again = await run_with({"nodes": [ai(response_format="json")]}, {"name": "X"})
    assert again.status == "succeeded" and again.node_states["ask"].cached is False


async def test_second_identical_call_is_cached_in_process(run_with: ServiceRunner,
                                                          model_stub: ModelStub) -> None:
    doc = {"nodes": [ai()]}
    first = await run_with(doc, {"name": "Ada"})
    second = await run_with(doc, {"name": "Ada"})
    assert model_stub.calls == 1
    assert second.node_states["ask"].cached is True
    assert second.output == first.output


@pytest.mark.parametrize("change", [{"temperature": 0.9}, {"model": "other"},
                                    {"prompt": "Say bye to {{ inputs.name }}"},
                                    {"system_prompt": "new"}, {"max_tokens": 7},
                                    {"response_format": "json"}])
async def test_any_change_to_the_request_misses(run_with: ServiceRunner, model_stub: ModelStub,
                                                change: dict[str, Any]) -> None:
    await run_with({"nodes": [ai(temperature=0.1)]}, {"name": "Ada"})
    record = await run_with({"nodes": [ai(**{"temperature": 0.1, **change})]}, {"name": "Ada"})
    assert model_stub.calls == 2
    assert record.node_states["ask"].cached is False


async def test_cache_false_bypasses(run_with: ServiceRunner, model_stub: ModelStub) -> None:
    for _ in range(2):
        record = await run_with({"nodes": [ai(cache=False)]}, {"name": "Ada"})
    assert model_stub.calls == 2 and record.node_states["ask"].cached is False


async def test_concurrent_identical_requests_make_one_call(run_with: ServiceRunner,
                                                           model_stub: ModelStub) -> None:
    model_stub.script = [("slow", 0.3)]
    nodes = [ai(f"a{i}") for i in range(5)]
    record = await run_with({"nodes": nodes}, {"name": "Ada"})
    assert model_stub.calls == 1
    assert sorted(record.node_states[f"a{i}"].cached for i in range(5)) == [False] + [True] * 4


async def test_429_is_retried_and_500_too_but_400_is_not(run_with: ServiceRunner,
                                                         model_stub: ModelStub) -> None:
    model_stub.script = [("status", 429, 0), ("status", 500)]
    ok = await run_with({"nodes": [ai(retry=FAST_RETRY, cache=False)]}, {"name": "Ada"})
    assert ok.status == "succeeded" and ok.node_states["ask"].attempts == 3
    model_stub.script = [("status", 400)]
    bad = await run_with({"nodes": [ai(retry=FAST_RETRY, cache=False)]}, {"name": "Ada"})
    assert bad.status == "failed" and bad.node_states["ask"].attempts == 1
    # the rest is the openai library's own wording
    assert bad.errors[0].message.startswith("node `ask`: model endpoint answered HTTP 400: ")


async def test_slow_model_times_out_naming_the_node(run_with: ServiceRunner,
                                                    model_stub: ModelStub) -> None:
    model_stub.script = [("slow", 2), ("slow", 2)]
    record = await run_with({"nodes": [ai(timeout_s=0.3, retry={**FAST_RETRY,
                                                                "max_attempts": 2})]},
                            {"name": "Ada"})
    assert record.status == "failed"
    assert record.errors[0].message == "node `ask`: timed out after 0.3s"


async def test_redis_cache_key_and_ttl(node_settings: Settings, run_with: ServiceRunner,
                                       redis_url: str, model_stub: ModelStub) -> None:
    from redis.asyncio import Redis
    settings = load_settings(**{**node_settings.model_dump(), "redis_url": redis_url})
    async with open_services(settings) as services:
        record = await run_with.runner({"nodes": [ai(cache_ttl_s=1)]}, {"name": "Ada"},
                                       services=services)
        again = await run_with.runner({"nodes": [ai(cache_ttl_s=1)]}, {"name": "Ada"},
                                      services=services)
    assert again.node_states["ask"].cached is True and model_stub.calls == 1
    client = Redis.from_url(redis_url)
    keys = [k.decode() for k in await client.keys("*")]
    request = {"endpoint": model_stub.url, "model": "gpt-4o-mini", "temperature": None,  # type: ignore[attr-defined]
               "max_tokens": None, "response_format": "text",
               "messages": [{"role": "user", "content": "Say hello to Ada"}]}
    assert keys == [LLM_KEY_PREFIX + request_digest(request)]
    assert 0 < await client.ttl(keys[0]) <= 1

    async def expired() -> bool:
        return await client.keys("*") == []

    await wait_until(expired, "the 1 s TTL to expire the key")
    await client.aclose()
    assert record.output == "echo: Say hello to Ada"


async def test_default_ttl_comes_from_settings(redis_url: str) -> None:
    cache = RedisLLMCache(redis_url)

    async def answer() -> dict[str, Any]:
        return {"text": "hi"}
    await cache.get_or_call("d" * 64, 120, answer)
    assert 100 < await cache.redis.ttl(LLM_KEY_PREFIX + "d" * 64) <= 120
    await cache.close()


async def test_only_successful_answers_are_stored() -> None:
    cache = MemoryLLMCache()

    async def boom() -> dict[str, Any]:
        raise RuntimeError("model down")

    async def fine() -> dict[str, Any]:
        return {"text": "ok"}
    with pytest.raises(RuntimeError):
        await cache.get_or_call("k", 60, boom)
    assert await cache.get_or_call("k", 60, fine) == ({"text": "ok"}, False)
    assert await cache.get_or_call("k", 60, fine) == ({"text": "ok"}, True)


async def test_memory_cache_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    cache = MemoryLLMCache(clock=lambda: now[0])

    async def fine() -> dict[str, Any]:
        return {"text": "ok"}
    await cache.get_or_call("k", 10, fine)
    now[0] += 11
    assert (await cache.get_or_call("k", 10, fine))[1] is False


async def test_redis_killed_mid_test_degrades_to_misses(
        node_settings: Settings, run_with: ServiceRunner, model_stub: ModelStub,
        caplog: pytest.LogCaptureFixture) -> None:
    redis = RedisProcess().start()
    settings = load_settings(**{**node_settings.model_dump(), "redis_url": redis.url})
    try:
        async with open_services(settings) as services:
            await run_with.runner({"nodes": [ai()]}, {"name": "Ada"}, services=services)
            hit = await run_with.runner({"nodes": [ai()]}, {"name": "Ada"}, services=services)
            assert hit.node_states["ask"].cached is True
            redis.kill()
            with caplog.at_level("WARNING", logger="flowloom.cache"):
                down = [await run_with.runner({"nodes": [ai()]}, {"name": "Ada"},
                                              services=services) for _ in range(3)]
    finally:
        redis.kill()
    assert all(r.status == "succeeded" for r in down)
    assert all(r.node_states["ask"].cached is False for r in down)
    assert model_stub.calls == 4
    warnings = [r for r in caplog.records if r.name == "flowloom.cache"]
    assert len(warnings) == 1 and "Redis unavailable" in warnings[0].getMessage()


def test_two_processes_make_one_model_call(tmp_path: Path, redis_url: str,
                                           model_stub: ModelStub) -> None:
    doc = tmp_path / "ai.json"
    doc.write_text(json.dumps({"nodes": [ai()]}))
    env = {**os.environ, "FLOWLOOM_STORE": f"sqlite:///{tmp_path / 'two.db'}",
           "FLOWLOOM_REDIS_URL": redis_url, "OPENAI_BASE_URL": model_stub.url,  # type: ignore[attr-defined]
           "OPENAI_API_KEY": "k"}
    records = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "flowloom", "run", str(doc), "--json",
                                 "--input", "name=Ada"], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr
        records.append(json.loads(result.stdout))
    assert model_stub.calls == 1
    assert [r["node_states"]["ask"]["cached"] for r in records] == [False, True]
    assert records[0]["output"] == records[1]["output"] == "echo: Say hello to Ada"


@pytest.mark.parametrize(("base_url", "key", "says"), [
    ("http://127.0.0.1:9/v1", "k", "http://127.0.0.1:9/v1: Connection error."),
    (None, "k", "https://api.openai.com/v1 (OPENAI_BASE_URL not set): Connection error."),
    (None, None, "https://api.openai.com/v1 (OPENAI_BASE_URL and OPENAI_API_KEY not set): "
                 "Connection error.")])
async def test_an_unreachable_model_names_the_endpoint_and_what_is_unset(
        base_url: str | None, key: str | None, says: str) -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        chat = OpenAIChat(base_url=base_url, api_key=key, http=http)
        with pytest.raises(NodeError) as failed:
            await chat.complete({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert failed.value.message == f"cannot reach the model endpoint {says}"
    assert failed.value.kind == "NetworkError"


@pytest.mark.parametrize(("answer", "parsed"), [
    ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
    ("```\n[true, null]\n```", [True, None]),
    ('  ```json{"b":"x"}```  ', {"b": "x"}),
])
async def test_a_fenced_json_answer_is_unfenced(run_with: ServiceRunner, model_stub: ModelStub,
                                                answer: str, parsed: Any) -> None:
    model_stub.script = [("text", answer)]
    record = await run_with({"nodes": [ai(response_format="json")]}, {"name": "X"})
    assert record.status == "succeeded"
    assert record.output == parsed


async def test_a_long_answer_that_is_not_json_is_quoted_up_to_200_characters(
        run_with: ServiceRunner, model_stub: ModelStub) -> None:
    model_stub.script = [("text", "a" * 199 + "bc")]
    record = await run_with({"nodes": [ai(response_format="json")]}, {"name": "X"})
    message = ("node `ask`: model answer is not JSON (Expecting value at column 1): '"
               + "a" * 199 + "b'")
    assert record.node_states["ask"].error == {"type": "InvalidJSON", "message": message}
    assert [(e.node_id, e.type, e.message) for e in record.errors] == [
        ("ask", "InvalidJSON", message)]


async def test_without_a_model_client_the_node_fails_saying_so(run: Runner) -> None:
    record = await run({"nodes": [ai()]}, {"name": "X"}, services=Services())
    assert record.status == "failed"
    assert [(e.node_id, e.type, e.message) for e in record.errors] == [
        ("ask", "NodeError", "node `ask`: no model client in the runtime context")]


@pytest.mark.parametrize(("config", "field"), [({"prompt": "Hi {{ inputs.who.name }}"}, "prompt"),
                                              ({"system_prompt": "Be {{ inputs.who.name }}"},
                                               "system_prompt")])
async def test_a_template_error_names_the_prompt_field(
        run_with: ServiceRunner, model_stub: ModelStub, config: dict[str, Any],
        field: str) -> None:
    record = await run_with({"nodes": [ai(**config)]}, {"name": "X"})
    assert record.status == "failed" and model_stub.calls == 0
    assert [(e.node_id, e.type, e.message) for e in record.errors] == [
        ("ask", "ExpressionError", f"node `ask`, field `{field}`: unknown name or attribute: "
                                   "'dict object' has no attribute 'who'")]


class InProcessModel:
    """A user's own chat model: it has no `base_url`, the client the ai node needs no more."""

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"text": "local: " + request["messages"][-1]["content"], "model": "local"}


async def test_a_chat_model_without_base_url_is_cached_under_a_null_endpoint(
        run: Runner) -> None:
    cache = MemoryLLMCache()
    services = Services(llm=InProcessModel(), cache=cache)  # type: ignore[arg-type]
    record = await run({"nodes": [ai()]}, {"name": "Ada"}, services=services)
    assert record.output == "local: Say hello to Ada"
    canonical = ('{"endpoint":null,"max_tokens":null,"messages":[{"content":"Say hello to Ada",'
                 '"role":"user"}],"model":"gpt-4o-mini","response_format":"text",'
                 '"temperature":null}')
    assert list(cache._entries) == [
        LLM_KEY_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()]
