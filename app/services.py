"""The long-lived helpers nodes use, built from settings: HTTP client, model, cache, tools."""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx

from flowloom.app.llm_cache import MemoryLLMCache, RedisLLMCache
from flowloom.app.settings import Settings
from flowloom.nodes.llm import OpenAIChat
from flowloom.nodes.services import NodeSettings, Services
from flowloom.nodes.tools import ComposioProvider


def node_settings(settings: Settings) -> NodeSettings:
    return NodeSettings(
        http_allow_private=settings.http_allow_private,
        http_allow_hosts=settings.http_allow_hosts,
        http_max_response_bytes=settings.http_max_response_bytes,
        llm_cache_ttl_s=settings.llm_cache_ttl_s,
        smtp_url=settings.smtp_url,
        max_run_state_bytes=settings.max_run_state_bytes,
        max_descendant_runs=settings.max_descendant_runs,
    )


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once per process: loading the CA bundle takes
    tens of milliseconds, more than a short run, and every run opens a client."""
    return httpx.create_ssl_context()


class PoolOnFirstRequest(httpx.AsyncBaseTransport):
    """httpx's own transport, made when the client sends its first request: most runs
    send none, and making it loads the CA bundle and the HTTP core (~50 ms of a
    `flowloom run` of a few transforms)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self.limits = limits
        self.pool: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.pool is None:
            self.pool = httpx.AsyncHTTPTransport(verify=tls_context(), limits=self.limits)
        return await self.pool.handle_async_request(request)

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()


def make_services(settings: Settings) -> tuple[Services, Callable[[], Awaitable[None]]]:
    """The services for `settings` and the call that closes them; `open_services` for a
    block. No async generator holds them, so a loop that shuts its generators down (in
    any order) cannot close these under a holder that still uses them."""
    cache = RedisLLMCache(settings.redis_url) if settings.redis_url else MemoryLLMCache()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    http = httpx.AsyncClient(transport=PoolOnFirstRequest(limits), timeout=httpx.Timeout(30.0))
    tools = (ComposioProvider(http, settings.composio_base_url, settings.composio_api_key)
             if settings.composio_base_url else None)
    services = Services(http=http, cache=cache, tools=tools, settings=node_settings(settings),
                        llm=OpenAIChat(base_url=settings.openai_base_url,
                                       api_key=settings.openai_api_key, http=http))

    async def close() -> None:
        try:
            await http.aclose()
        finally:
            await cache.close()
    return services, close


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    services, close = make_services(settings)
    try:
        yield services
    finally:
        await close()
