"""The services a run opens: what is built once per process rather than once per run."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from flowloom.app import services
from flowloom.app.settings import Settings


async def test_runs_share_one_tls_context(settings: Settings,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(create(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(ssl, "create_default_context", counting)
    services.tls_context.cache_clear()
    clients = []
    for _ in range(3):  # three runs, each with its own HTTP client
        async with services.open_services(settings) as opened:
            clients.append(opened.http)
    assert len(built) == 1
    assert len({id(c) for c in clients}) == 3
