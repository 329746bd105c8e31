"""The LLM response cache: Redis when configured, else an in-process LRU.

Keys are `flowloom:llm:<sha256 of the canonical request>`. Only successful answers are
stored; identical requests in flight in one process share one model call; a Redis that is
down or slow degrades to misses with one warning, never to a failed node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

LLM_KEY_PREFIX = "flowloom:llm:"
REDIS_TIMEOUT_S = 0.25
REDIS_BACKOFF_S = 5.0  # after a failure, skip Redis this long instead of waiting on it

log = logging.getLogger("flowloom.cache")
Answer = dict[str, Any]
Call = Callable[[], Awaitable[Answer]]


class _SingleFlight:
    """Identical requests in flight share one call. The call runs in a task of its own:
    a waiter that is cancelled (its run cancelled or timed out) leaves the others their
    answer; the call is cancelled only when nobody waits for it any more."""

    def __init__(self) -> None:
        self._inflight: dict[str, tuple[asyncio.Task[Answer], list[int]]] = {}

    async def run(self, key: str, call: Call) -> tuple[Answer, bool]:
        """(answer, shared): `shared` when another caller's call produced it."""
        entry = self._inflight.get(key)
        shared = entry is not None
        if entry is None:
            task: asyncio.Task[Answer] = asyncio.ensure_future(call())
            entry = self._inflight[key] = (task, [0])
            task.add_done_callback(lambda done: self._forget(key, done))
        task, waiters = entry
        waiters[0] += 1
        try:
            return await asyncio.shield(task), shared
        finally:
            waiters[0] -= 1
            if waiters[0] == 0 and not task.done():
                task.cancel()

    def _forget(self, key: str, done: asyncio.Task[Answer]) -> None:
        if self._inflight.get(key, (None,))[0] is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # every waiter saw it; not "never retrieved"


class MemoryLLMCache:
    def __init__(self, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._entries: OrderedDict[str, tuple[float, Answer]] = OrderedDict()
        self._flight = _SingleFlight()
        self.max_entries = max_entries
        self.clock = clock

    async def get_or_call(self, digest: str, ttl_s: int, call: Call) -> tuple[Answer, bool]:
        key = LLM_KEY_PREFIX + digest
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self.clock():
            self._entries.move_to_end(key)
            return hit[1], True
        answer, shared = await self._flight.run(key, call)
        if not shared and ttl_s > 0:
            self._entries[key] = (self.clock() + ttl_s, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return answer, shared

    async def close(self) -> None:
        self._entries.clear()


class RedisLLMCache:
    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis  # the client loads only where Redis is configured
        from redis.exceptions import RedisError

        self.errors = (RedisError, OSError)
        self.redis: Redis = Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                           socket_connect_timeout=REDIS_TIMEOUT_S)
        self._flight = _SingleFlight()
        self._down_until = 0.0
        self._warned = False

    def _failed(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + REDIS_BACKOFF_S
        if not self._warned:
            self._warned = True
            log.warning("LLM cache: Redis unavailable (%s); calling the model uncached",
                        type(exc).__name__)

    async def _get(self, key: str) -> Answer | None:
        if time.monotonic() < self._down_until:
            return None
        try:
            raw = await self.redis.get(key)
        except self.errors as exc:
            self._failed(exc)
            return None
        self._warned = False
        return json.loads(raw) if raw else None

    async def _set(self, key: str, answer: Answer, ttl_s: int) -> None:
        if ttl_s <= 0 or time.monotonic() < self._down_until:
            return
        try:
            await self.redis.set(key, json.dumps(answer), ex=ttl_s)
        except self.errors as exc:
            self._failed(exc)

    async def get_or_call(self, digest: str, ttl_s: int, call: Call) -> tuple[Answer, bool]:
        key = LLM_KEY_PREFIX + digest
        hit = await self._get(key)
        if hit is not None:
            return hit, True

        async def call_and_store() -> Answer:
            answer = await call()
            await self._set(key, answer, ttl_s)
            return answer

        return await self._flight.run(key, call_and_store)

    async def close(self) -> None:
        await self.redis.aclose()
