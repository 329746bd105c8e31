"""What may be shown of a value that can hold credentials: URLs in errors and logs, and the
config a node rendered for a run, before either is recorded."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

REDACTED = "[redacted]"
MAX_RENDERED_CONFIG_BYTES = 16 * 1024  # of one node's rendered config, as JSON

_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_BEARER = re.compile(r"\b(bearer)\s+[^\s'\"<>,;]+", re.IGNORECASE)
# A name's words: `X-Api-Key`, `apiKey`, `APIKey` and `api_key` are all [api, key].
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
SECRET_WORDS = frozenset({
    "password", "passwd", "passphrase", "pwd", "secret", "secrets", "token", "auth",
    "oauth", "authorization", "cookie", "cookies", "credential", "credentials", "apikey",
    "accesskey", "privatekey"})
# `tokens` (as in `max_tokens`) is a count, not a credential: whole words only.
SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"),
                          ("session", "id")})


def redact_url(url: object) -> str:
    """`url` (text or an httpx.URL) fit for errors and logs: a userinfo password (or a
    lone userinfo, often a token), every query value and the fragment become `***`."""
    try:
        parts = urlsplit(str(url))
    except ValueError:  # e.g. an unclosed `[`: show nothing rather than fail the error
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if colon else f"***@{hostport}"
    # A part without `=` may be a bare token: hidden whole.
    query = "&".join(f"{p.partition('=')[0]}=***" if "=" in p else "***"
                     for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query,
                       "***" if parts.fragment else ""))


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def is_secret_name(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """Whether a key called `name` holds a credential: one of `extra` (lower case), or
    named with a secret word (`Authorization`, `X-Api-Key`, `client_secret`, `password`)."""
    return name.lower() in extra or _secret_words(name)


@lru_cache(maxsize=1024)  # the same few keys come back with every node that settles
def _secret_words(name: str) -> bool:
    words = [w.lower() for w in _WORDS.findall(name)]
    return (any(w in SECRET_WORDS for w in words)
            or any(pair in SECRET_PAIRS for pair in pairwise(words)))


@lru_cache(maxsize=1024)
def _url_name(name: str) -> bool:
    words = _WORDS.findall(name)
    return bool(words) and words[-1].lower() in ("url", "uri")


def redact(value: Any, *, secret_names: Iterable[str] = (),
           masked: Iterable[str] = ()) -> Any:
    """A copy of the JSON `value` (a node's rendered config, field -> value) fit to record:

    - the value of a key that `is_secret_name` (or in `secret_names`, any case) becomes
      `[redacted]`, whatever it holds (null stays null);
    - each value inside a top-level field named in `masked` (an http node's `query`)
      becomes `***`, as a URL's query values do;
    - every string loses the secrets it shows: URLs in it go through `redact_url` (the
      whole string when its key ends in `url` or `uri`), and `Bearer <credential>`
      keeps only `Bearer [redacted]`.
    """
    names = frozenset(n.lower() for n in secret_names if n)  # "" names no key
    if isinstance(value, Mapping):
        hidden = frozenset(masked)
        return {k: _masked(v) if k in hidden else _redact(v, k, names)
                for k, v in value.items()}
    return _redact(value, "", names)


def _masked(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: "***" for k in value}
    if isinstance(value, list):
        return ["***" for _ in value]
    return "***" if value is not None else None


def _redact(value: Any, key: str, names: frozenset[str]) -> Any:
    """`value` found under `key` ("" in a list or at the top)."""
    if value is not None and is_secret_name(key, names):
        return REDACTED
    if isinstance(value, str):
        if _url_name(key):
            return redact_url(value)
        return _BEARER.sub(r"\1 " + REDACTED, redact_text(value))
    if isinstance(value, Mapping):
        return {k: _redact(v, str(k), names) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, "", names) for v in value]
    return value


def cap_fields(fields: Mapping[str, Any], limit: int = MAX_RENDERED_CONFIG_BYTES
               ) -> dict[str, Any]:
    """`fields`, in order, while their JSON fits in `limit` bytes in all; a field that no
    longer fits becomes `{"truncated": true, "size_bytes", "preview"}`, its preview the
    start of its JSON within what is left (cut after redaction, so it hides nothing less)."""
    kept: dict[str, Any] = {}
    left = limit
    for name, value in fields.items():
        try:
            text = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # a lone surrogate (shown as U+FFFD: the record could not be stored
            # with it) or a key JSON cannot hold (a tuple: kept as its text)
            text = orjson.dumps(_valid_text(value), default=str,
                                option=orjson.OPT_NON_STR_KEYS)
        if len(text) <= left:
            kept[name] = orjson.loads(text)  # as JSON carries it: NaN is null, keys text
            left -= len(text)
        else:
            preview = text[:left].decode(errors="ignore")
            kept[name] = {"truncated": True, "size_bytes": len(text), "preview": preview}
            left -= len(preview.encode())
    return kept


_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_key(key: Any) -> Any:
    """Keys orjson takes as they are (None is "null", as on the first path); any other
    key (a tuple made by an expression) as its text."""
    if key is None or isinstance(key, int | float):
        return key
    return _valid_text(key if isinstance(key, str) else str(key))


def _valid_text(value: Any) -> Any:
    """`value` with every lone surrogate in its text replaced by U+FFFD, and keys JSON
    can hold."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {_json_key(k): _valid_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_valid_text(v) for v in value]
    return value
