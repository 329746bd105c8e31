"""graphs/redact.py: what of a node's rendered config may be recorded, and its size cap.
(`redact_url` and `redact_text` have their cases in tests/nodes/test_net.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowloom.graphs.redact import (
    MAX_RENDERED_CONFIG_BYTES,
    REDACTED,
    cap_fields,
    is_secret_name,
    redact,
)


@pytest.mark.parametrize("name", [
    "Authorization", "authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
    "cookies", "X-Api-Key", "x-apikey", "apiKey", "APIKey", "api_key", "API_KEY",
    "access_key", "AccessKey", "accesskey", "private_key", "privatekey", "session_id",
    "sessionId", "password", "db_password", "passwd", "passphrase", "pwd", "secret",
    "client_secret", "secrets", "token", "access_token", "X-Auth-Token", "auth", "OAuth",
    "oauth", "credential", "credentials", "X-Custom-Auth"])
def test_names_that_hold_credentials(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    "max_tokens", "tokens", "author", "url", "headers", "Content-Type", "api", "key",
    "session", "id", "X-Request-Id", "keyword", "passage", "", "Accept"])
def test_names_that_do_not(name: str) -> None:
    assert not is_secret_name(name)


def test_extra_names_are_matched_whole_in_lower_case() -> None:
    assert is_secret_name("X-Tenant", frozenset({"x-tenant"}))
    assert is_secret_name("x-tenant", frozenset({"x-tenant"}))
    assert not is_secret_name("X-Tenant-Name", frozenset({"x-tenant"}))


def test_http_headers_lose_their_credentials_and_keep_the_rest() -> None:
    rendered = {"headers": {"Authorization": "Bearer sk-live-1", "X-Api-Key": "k1",
                            "Cookie": "sid=9", "Accept": "application/json",
                            "X-Tenant": "acme-secret-tenant", "X-None": None}}
    assert redact(rendered, secret_names=["x-TENANT"]) == {"headers": {
        "Authorization": REDACTED, "X-Api-Key": REDACTED, "Cookie": REDACTED,
        "Accept": "application/json", "X-Tenant": REDACTED, "X-None": None}}


def test_a_secret_name_hides_whatever_it_holds_but_null() -> None:
    rendered = {"password": 1234, "auth": {"user": "ada", "pin": 7}, "token": ["a", "b"],
                "api_key": None, "secret": False}
    assert redact(rendered) == {"password": REDACTED, "auth": REDACTED, "token": REDACTED,
                                "api_key": None, "secret": REDACTED}


def test_secret_names_are_found_at_any_depth_and_inside_lists() -> None:
    rendered = {"input": {"accounts": [{"name": "a", "password": "p1"},
                                       {"name": "b", "password": "p2"}],
                          "deep": {"deeper": {"client_secret": "s"}}}}
    assert redact(rendered) == {"input": {
        "accounts": [{"name": "a", "password": REDACTED}, {"name": "b", "password": REDACTED}],
        "deep": {"deeper": {"client_secret": REDACTED}}}}


def test_a_top_level_field_named_as_a_secret_is_hidden_whole() -> None:
    assert redact({"api_key": "k", "prompt": "hi"}) == {"api_key": REDACTED, "prompt": "hi"}


def test_masked_fields_keep_their_keys_and_hide_each_value() -> None:
    rendered = {"query": {"key": "QSECRET", "page": 2}, "ids": ["a", "b"], "one": "x",
                "none": None, "other": {"page": 2}}
    assert redact(rendered, masked=["query", "ids", "one", "none"]) == {
        "query": {"key": "***", "page": "***"}, "ids": ["***", "***"], "one": "***",
        "none": None, "other": {"page": 2}}


def test_masked_applies_to_top_level_fields_only() -> None:
    rendered = {"json": {"query": {"q": "cats"}}}
    assert redact(rendered, masked=["query"]) == rendered


def test_urls_are_redacted_in_every_string() -> None:
    rendered = {"body": "see https://u:pw@h/x?k=v#f and http://h2/?t=1",
                "list": ["https://h/?a=1", 5, True, None, 1.5]}
    assert redact(rendered) == {"body": "see https://u:***@h/x?k=***#*** and http://h2/?t=***",
                                "list": ["https://h/?a=***", 5, True, None, 1.5]}


@pytest.mark.parametrize("key", ["url", "URL", "api_url", "webhookUrl", "uri", "redirect_uri"])
def test_a_url_field_is_redacted_whole_even_without_a_scheme(key: str) -> None:
    # redact_text finds URLs by their scheme; a field named as a URL is one whole
    assert redact({key: "//me:pw@example.com/x?key=QSECRET"}) == {
        key: "//me:***@example.com/x?key=***"}
    assert redact({key: "example.com/x?key=QSECRET"}) == {key: "example.com/x?key=***"}


def test_a_field_that_only_looks_like_a_url_name_is_text() -> None:
    assert redact({"curly": "Bearer abc"}) == {"curly": f"Bearer {REDACTED}"}
    assert redact({"url_list": "a?b=c"}) == {"url_list": "a?b=c"}


def test_a_bearer_credential_is_hidden_in_any_text() -> None:
    rendered = {"body": "send bearer abc.def-1 then BEARER  x9, 'Bearer q'; done"}
    assert redact(rendered) == {"body": f"send bearer {REDACTED} then BEARER {REDACTED}, "
                                        f"'Bearer {REDACTED}'; done"}
    assert redact({"body": "unbearer x"}) == {"body": "unbearer x"}


def test_a_tuple_becomes_a_list_and_other_values_pass() -> None:
    assert redact({"t": ("https://h/?a=1", 2)}) == {"t": ["https://h/?a=***", 2]}


def test_a_value_that_is_not_a_mapping_is_redacted_too() -> None:
    assert redact(["https://h/?a=1", {"token": "t"}]) == ["https://h/?a=***",
                                                         {"token": REDACTED}]
    assert redact("Bearer abc") == f"Bearer {REDACTED}"
    assert redact(3) == 3


def test_the_input_is_not_changed() -> None:
    rendered: dict[str, Any] = {"headers": {"Authorization": "x"}, "query": {"k": "v"}}
    redact(rendered, masked=["query"])
    assert rendered == {"headers": {"Authorization": "x"}, "query": {"k": "v"}}


def test_fields_that_fit_are_kept_whole_in_order() -> None:
    fields = {"url": "u" * 10, "body": {"a": [1, 2]}}
    kept = cap_fields(fields, limit=len('"uuuuuuuuuu"') + len('{"a":[1,2]}'))
    assert kept == fields and list(kept) == ["url", "body"]


def test_the_field_that_does_not_fit_is_cut_with_a_marker_and_the_rest_after_it() -> None:
    fields = {"url": "u" * 10, "body": "b" * 100, "n": 1}
    kept = cap_fields(fields, limit=20)
    assert kept == {
        "url": "u" * 10,
        "body": {"truncated": True, "size_bytes": 102, "preview": '"bbbbbbb'},
        "n": {"truncated": True, "size_bytes": 1, "preview": ""}}


def test_a_preview_never_ends_in_half_a_character() -> None:
    kept = cap_fields({"a": "é" * 10, "n": 1}, limit=4)  # `"é` is 3 bytes, `"éé` 5
    assert kept["a"] == {"truncated": True, "size_bytes": 22, "preview": '"é'}
    assert kept["n"] == 1  # the byte left over still holds it


def test_the_default_cap_is_16_kib() -> None:
    assert MAX_RENDERED_CONFIG_BYTES == 16 * 1024
    text = "x" * (16 * 1024 - 2)  # with its quotes: exactly the cap
    assert cap_fields({"a": text}) == {"a": text}
    cut = cap_fields({"a": text + "x"})["a"]
    assert cut["truncated"] is True and cut["size_bytes"] == 16 * 1024 + 1
    assert len(cut["preview"]) == 16 * 1024


def test_values_json_cannot_hold_are_sized_and_kept_as_text() -> None:
    # Kept as the record's JSON will carry them: a set as its text, keys as text, NaN
    # as null, a lone surrogate as U+FFFD (the record could not be stored with it).
    kept = cap_fields({"s": {1, 2}, "k": {1: "a"}, "n": float("nan"), "u": "a\ud800b",
                       "d": {"x\udfff": ["\ud800"]}}, limit=100)
    assert kept == {"s": "{1, 2}", "k": {"1": "a"}, "n": None, "u": "a\ufffdb",
                    "d": {"x\ufffd": ["\ufffd"]}}
    assert json.loads(cap_fields({"s": {1, 2}}, limit=3)["s"]["preview"] + '"') == "{1"


def test_a_value_with_a_lone_surrogate_keeps_its_sets_and_number_keys_as_text() -> None:
    # The surrogate sends the whole value down the second path, which must still take
    # what JSON cannot hold.
    kept = cap_fields({"m": {"\ud800": {7}, 2: "z", "n": float("inf")}})
    assert kept == {"m": {"\ufffd": "{7}", "2": "z", "n": None}}


def test_keys_that_are_not_text_read_the_same_with_or_without_a_lone_surrogate() -> None:
    keys = {None: 1, True: 2, 1.5: 3}
    assert cap_fields({"a": {**keys, "s": "ok"}}) == {
        "a": {"null": 1, "true": 2, "1.5": 3, "s": "ok"}}
    assert cap_fields({"a": {**keys, "s": "\udc00"}}) == {
        "a": {"null": 1, "true": 2, "1.5": 3, "s": "\ufffd"}}


def test_secret_names_hide_keys_only_never_a_list_item_or_the_value_itself() -> None:
    assert redact(["v", ["w"]], secret_names=["XXXX", ""]) == ["v", ["w"]]
    assert redact("v", secret_names=["XXXX"]) == "v"


def test_a_key_json_cannot_hold_is_kept_as_its_text() -> None:
    # Expressions refuse such keys; a node type's own values may still hold one
    assert cap_fields({"a": {(1, 2): "t", frozenset(): "f", 3: "i"}}) == {
        "a": {"(1, 2)": "t", "frozenset()": "f", "3": "i"}}
