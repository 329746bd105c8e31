"""The LLM response cache on its own: single flight, the in-process LRU and its expiry,
and Redis outages (a real redis-server that is stopped, restarted, full or silent)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from redis.asyncio import Redis

from flowloom.app import llm_cache
from flowloom.app.llm_cache import MemoryLLMCache, RedisLLMCache
from tests.servers import RedisProcess

Cache = MemoryLLMCache | RedisLLMCache


class Model:
    """Counts calls; answers `answer <n>` for the n-th call."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return {"text": f"answer {self.calls}"}


async def test_a_shared_model_call_survives_one_waiters_cancel() -> None:
    cache = MemoryLLMCache()
    gate = asyncio.Event()
    calls = 0

    async def call() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return {"text": "hi"}

    first = asyncio.create_task(cache.get_or_call("d", 60, call))
    second = asyncio.create_task(cache.get_or_call("d", 60, call))
    await asyncio.sleep(0)  # both are waiting on the one call now
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == ({"text": "hi"}, True)
    assert first.cancelled()
    assert calls == 1


async def test_a_call_nobody_waits_for_is_cancelled() -> None:
    cache = MemoryLLMCache()
    started, stopped = asyncio.Event(), asyncio.Event()

    async def call() -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return {}

    only = asyncio.create_task(cache.get_or_call("d", 60, call))
    await started.wait()
    only.cancel()
    await asyncio.wait_for(stopped.wait(), 10)
    assert only.cancelled()


async def test_the_call_goes_on_until_the_last_of_three_waiters_leaves(
        caplog: pytest.LogCaptureFixture) -> None:
    cache = MemoryLLMCache()
    started, stopped = asyncio.Event(), asyncio.Event()

    async def call() -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return {}

    waiters = [asyncio.create_task(cache.get_or_call("d", 60, call)) for _ in range(3)]
    await started.wait()
    for waiter in waiters[:2]:
        waiter.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not stopped.is_set()
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        waiters[2].cancel()
        await asyncio.wait_for(stopped.wait(), 10)
        for _ in range(3):  # let the call's done callbacks run
            await asyncio.sleep(0)
    assert [w.cancelled() for w in waiters] == [True, True, True]
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    # the next identical request starts a call of its own
    assert await cache.get_or_call("d", 60, Model()) == ({"text": "answer 1"}, False)


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield MemoryLLMCache()
        return
    built = RedisLLMCache(redis_url)
    yield built
    await built.close()


async def test_different_requests_in_flight_get_their_own_answers(cache: Cache) -> None:
    gate = asyncio.Event()

    def model(text: str) -> Any:
        async def call() -> dict[str, Any]:
            await gate.wait()
            return {"text": text}
        return call

    first = asyncio.create_task(cache.get_or_call("a", 60, model("for a")))
    second = asyncio.create_task(cache.get_or_call("b", 60, model("for b")))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gate.set()
    assert await first == ({"text": "for a"}, False)
    assert await second == ({"text": "for b"}, False)


async def test_a_ttl_of_zero_stores_nothing(cache: Cache,
                                            caplog: pytest.LogCaptureFixture) -> None:
    model = Model()
    with caplog.at_level(logging.WARNING, logger="flowloom.cache"):
        assert await cache.get_or_call("z", 0, model) == ({"text": "answer 1"}, False)
        assert await cache.get_or_call("z", 0, model) == ({"text": "answer 2"}, False)
        assert await cache.get_or_call("z", 1, model) == ({"text": "answer 3"}, False)
        assert await cache.get_or_call("z", 1, model) == ({"text": "answer 3"}, True)
    assert caplog.records == []


# --- in-process LRU ---------------------------------------------------------------------

async def test_the_least_recently_used_answer_goes_first() -> None:
    cache = MemoryLLMCache(max_entries=2)
    model = Model()
    await cache.get_or_call("a", 60, model)
    await cache.get_or_call("b", 60, model)
    assert await cache.get_or_call("a", 60, model) == ({"text": "answer 1"}, True)
    await cache.get_or_call("c", 60, model)  # evicts b, read longest ago
    assert await cache.get_or_call("a", 60, model) == ({"text": "answer 1"}, True)
    assert await cache.get_or_call("c", 60, model) == ({"text": "answer 3"}, True)
    assert await cache.get_or_call("b", 60, model) == ({"text": "answer 4"}, False)


async def test_the_default_cache_holds_1024_answers() -> None:
    cache = MemoryLLMCache()
    model = Model()
    for n in range(1025):
        await cache.get_or_call(f"d{n}", 60, model)
    assert await cache.get_or_call("d1", 60, model) == ({"text": "answer 2"}, True)
    assert await cache.get_or_call("d1024", 60, model) == ({"text": "answer 1025"}, True)
    assert await cache.get_or_call("d0", 60, model) == ({"text": "answer 1026"}, False)


async def test_an_uncacheable_answer_does_not_push_out_a_cached_one() -> None:
    cache = MemoryLLMCache(max_entries=1)
    model = Model()
    await cache.get_or_call("kept", 60, model)
    await cache.get_or_call("once", 0, model)
    assert await cache.get_or_call("kept", 60, model) == ({"text": "answer 1"}, True)


async def test_an_answer_lives_exactly_its_ttl() -> None:
    now = [100.0]
    cache = MemoryLLMCache(clock=lambda: now[0])
    model = Model()
    await cache.get_or_call("k", 10, model)
    now[0] = 109.75
    assert await cache.get_or_call("k", 10, model) == ({"text": "answer 1"}, True)
    now[0] = 110.0
    assert await cache.get_or_call("k", 10, model) == ({"text": "answer 2"}, False)


# --- Redis outages ------------------------------------------------------------------------

@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The cache's monotonic clock, set by the test (asyncio keeps the real one)."""
    now = [1000.0]
    monkeypatch.setattr(llm_cache, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess()  # not started: the port refuses connections
    yield server
    server.kill()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "flowloom.cache"]


async def test_a_down_redis_is_skipped_for_5_seconds_and_warned_about_once_an_outage(
        clock: list[float], redis_server: RedisProcess,
        caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisLLMCache(redis_server.url)
    model = Model()
    down = "LLM cache: Redis unavailable (ConnectionError); calling the model uncached"
    with caplog.at_level(logging.WARNING, logger="flowloom.cache"):
        assert await cache.get_or_call("k", 60, model) == ({"text": "answer 1"}, False)
        assert warnings(caplog) == [down]
        clock[0] = 1005.0  # asked again: still down, no second warning
        assert await cache.get_or_call("k", 60, model) == ({"text": "answer 2"}, False)
        assert warnings(caplog) == [down]
        redis_server.start()
        probe = Redis.from_url(redis_server.url)
        clock[0] = 1009.75  # back, but not asked before 1010
        assert await cache.get_or_call("k", 60, model) == ({"text": "answer 3"}, False)
        assert await probe.keys("*") == []
        clock[0] = 1010.0
        assert await cache.get_or_call("k", 60, model) == ({"text": "answer 4"}, False)
        assert await probe.keys("*") == [b"flowloom:llm:k"]
        assert await cache.get_or_call("k", 60, model) == ({"text": "answer 4"}, True)
        await probe.aclose()
        redis_server.kill()  # a new outage is warned about again
        clock[0] = 1011.0
        assert await cache.get_or_call("k", 60, model) == ({"text": "answer 5"}, False)
    assert warnings(caplog) == [down, down]
    await cache.close()


async def test_a_full_redis_that_refuses_writes_still_answers(
        redis_server: RedisProcess, caplog: pytest.LogCaptureFixture) -> None:
    redis_server.start()
    admin = Redis.from_url(redis_server.url)
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", 1)
    cache = RedisLLMCache(redis_server.url)
    model = Model()
    with caplog.at_level(logging.WARNING, logger="flowloom.cache"):
        assert await cache.get_or_call("k", 60, model) == ({"text": "answer 1"}, False)
    assert warnings(caplog) == [
        "LLM cache: Redis unavailable (OutOfMemoryError); calling the model uncached"]
    assert await admin.keys("*") == []
    await admin.aclose()
    await cache.close()


async def test_a_redis_that_never_answers_degrades_to_a_miss(
        caplog: pytest.LogCaptureFixture) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the command, never replies

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cache = RedisLLMCache(f"redis://127.0.0.1:{port}/0")
    model = Model()
    with caplog.at_level(logging.WARNING, logger="flowloom.cache"):
        async with asyncio.timeout(30):  # only a hang trips this: the client must give up
            answer = await cache.get_or_call("k", 60, model)
    assert answer == ({"text": "answer 1"}, False)
    assert warnings(caplog) == [
        "LLM cache: Redis unavailable (TimeoutError); calling the model uncached"]
    await cache.close()
    server.close()
