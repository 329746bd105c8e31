"""The LLM cache key: SHA-256 of the canonical request, pinned by values computed by hand."""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowloom.app.llm_cache import LLM_KEY_PREFIX
from flowloom.nodes.ai import request_digest
from flowloom.nodes.services import Services
from tests.servers import ModelStub
from tests.service_fixtures import ServiceRunner

REQUEST = {"endpoint": "http://127.0.0.1:8000/v1", "model": "gpt-4o-mini",
           "temperature": 0.2, "max_tokens": 64, "response_format": "text",
           "messages": [{"role": "system", "content": "You are terse."},
                        {"role": "user", "content": "Grüß Gott"}]}
# sorted keys, no whitespace, UTF-8 (not \u escapes)
CANONICAL = ('{"endpoint":"http://127.0.0.1:8000/v1","max_tokens":64,"messages":'
             '[{"content":"You are terse.","role":"system"},{"content":"Grüß Gott",'
             '"role":"user"}],"model":"gpt-4o-mini","response_format":"text",'
             '"temperature":0.2}')


def test_digest_is_sha256_of_the_canonical_request() -> None:
    expected = "aed73786a14ddbdac4e9dbdefa736432502fe334b4f93210dee9897ad4a635dc"
    assert hashlib.sha256(CANONICAL.encode()).hexdigest() == expected
    assert request_digest(REQUEST) == expected
    assert request_digest(dict(reversed(REQUEST.items()))) == expected  # key order is moot


def test_digest_of_unset_fields_keeps_them_as_null() -> None:
    request = {"endpoint": None, "model": "m", "temperature": None, "max_tokens": None,
               "response_format": "json", "messages": [{"role": "user", "content": "hi"}]}
    assert request_digest(request) == (
        "25aff58cab3ac9e0d05388e7944c38885efee9582a0c68cc905969db248c4a64")


def changed(value: Any) -> st.SearchStrategy[Any]:
    others: st.SearchStrategy[Any] = st.one_of(
        st.none(), st.text(max_size=8), st.integers(-3, 3), st.floats(0, 2),
        st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user"]),
                                        "content": st.text(max_size=8)}), max_size=2))
    return others.filter(lambda other: other != value or type(other) is not type(value))


@st.composite
def one_field_changed(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    key = draw(st.sampled_from(sorted(REQUEST)))
    other = draw(changed(REQUEST[key]))
    return REQUEST, {**REQUEST, key: other}


@given(one_field_changed())
def test_changing_any_single_field_changes_the_digest(
        pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    before, after = pair
    assert request_digest(before) != request_digest(after)


@given(st.sampled_from(["system", "user"]), st.integers(0, 1), st.text(min_size=1, max_size=4))
def test_changing_one_message_changes_the_digest(role: str, index: int, suffix: str) -> None:
    messages = [dict(m) for m in REQUEST["messages"]]  # type: ignore[attr-defined]
    messages[index]["content"] += suffix
    assert request_digest({**REQUEST, "messages": messages}) != request_digest(REQUEST)
    messages[index]["content"] = REQUEST["messages"][index]["content"]  # type: ignore[index]
    messages[index]["role"] = "assistant"
    assert request_digest({**REQUEST, "messages": messages}) != request_digest(REQUEST)


async def test_the_ai_node_caches_under_the_digest_of_what_it_sends(
        run_with: ServiceRunner, services: Services, model_stub: ModelStub) -> None:
    doc = {"nodes": [{"id": "ask", "type": "ai", "config": {
        "prompt": "Say hello to {{ inputs.name }}", "system_prompt": "Be brief",
        "model": "m1", "temperature": 0.5, "max_tokens": 7}}]}
    record = await run_with(doc, {"name": "Ada"})
    assert record.output == "echo: Say hello to Ada"
    canonical = ('{"endpoint":"' + model_stub.url + '","max_tokens":7,"messages":'  # type: ignore[attr-defined]
                 '[{"content":"Be brief","role":"system"},{"content":"Say hello to Ada",'
                 '"role":"user"}],"model":"m1","response_format":"text","temperature":0.5}')
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    assert list(services.cache._entries) == [LLM_KEY_PREFIX + digest]
