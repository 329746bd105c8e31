"""The services a run opens: what is built once per process rather than once per run."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from flowloom.app import services
from flowloom.app.settings import Settings
from tests.servers import FlakyServer


async def test_runs_share_one_tls_context_made_on_the_first_request(
        settings: Settings, monkeypatch: pytest.MonkeyPatch,
        web: tuple[FlakyServer, str]) -> None:
    built: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(create(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(ssl, "create_default_context", counting)
    services.tls_context.cache_clear()
    async with services.open_services(settings) as opened:  # a run that sends nothing
        assert opened.http is not None
    assert built == []
    clients = []
    for n in range(3):  # three runs, each with its own HTTP client, each sending
        async with services.open_services(settings) as opened:
            assert opened.http is not None
            reply = await opened.http.get(f"{web[1]}/echo?key=tls{n}")
            assert reply.status_code == 200
            clients.append(opened.http)
    assert len(built) == 1
    assert len({id(c) for c in clients}) == 3
    assert [len(web[0].hits[f"tls{n}"]) for n in range(3)] == [1, 1, 1]
