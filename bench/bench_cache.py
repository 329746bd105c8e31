"""The cached `ai` node against a bare Redis GET and an uncached call. Prints a table.

    python bench/bench_cache.py [--n 2000]

Redis: FLOWLOOM_REDIS_URL when set, else a throwaway redis-server on a free port. The
model is the OpenAI-compatible stub of the tests, served on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import print_table
from flowloom.app.runner import run_sync
from flowloom.app.services import open_services
from flowloom.app.settings import load_settings
from flowloom.graphs.context import NodeContext, RunContext, Scope
from flowloom.graphs.expressions import Expressions
from flowloom.nodes.ai import Ai, AiConfig
from flowloom.nodes.services import Services
from tests.servers import ModelStub, RedisProcess, ServerThread


def node_context(services: Services, expressions: Expressions) -> NodeContext:
    scope = Scope(inputs={"name": "Ada"}, outputs={}, run={"id": "bench"})
    return NodeContext(node_id="ask", path="ask", scope=scope, expressions=expressions,
                       run=RunContext("bench", services=services))


async def measure(redis_url: str, model_url: str, n: int) -> list[tuple[str, str, str]]:
    settings = load_settings(redis_url=redis_url, openai_base_url=model_url, openai_api_key="k")
    ai = Ai()
    cached_cfg = AiConfig(prompt="Say hello to {{ inputs.name }}", model="bench")
    uncached_cfg = AiConfig(prompt="Say hello to {{ inputs.name }}", model="bench", cache=False)
    expressions = Expressions()
    async with open_services(settings) as services:
        await services.cache.redis.flushdb()
        await ai.run(cached_cfg, node_context(services, expressions))  # fill the cache
        key = (await services.cache.redis.keys("flowloom:llm:*"))[0]

        async def timed(make: Any, count: int) -> list[float]:
            times = []
            for _ in range(count):
                start = time.perf_counter()
                await make()
                times.append((time.perf_counter() - start) * 1000)
            return times

        bare = await timed(lambda: services.cache.redis.get(key), n)
        node = await timed(lambda: ai.run(cached_cfg, node_context(services, expressions)), n)
        call = await timed(lambda: ai.run(uncached_cfg, node_context(services, expressions)),
                           max(n // 20, 20))
        walls = []
        for _ in range(2):  # the first round also opens the pool's connections
            start = time.perf_counter()
            results = await asyncio.gather(*(
                ai.run(cached_cfg, node_context(services, expressions)) for _ in range(100)))
            walls.append((time.perf_counter() - start) * 1000)
            assert all(r == "echo: Say hello to Ada" for r in results)
        cold, concurrent = walls
    bare_ms, node_ms, call_ms = (statistics.median(x) for x in (bare, node, call))
    return [
        ("bare Redis GET of the cached answer (median)", f"{bare_ms:.3f} ms", ""),
        ("cached ai node: render, key, GET, parse (median)", f"{node_ms:.3f} ms", "< 2 ms"),
        ("  overhead over the bare GET", f"{node_ms - bare_ms:.3f} ms", "<= 1 ms"),
        ("uncached ai node, local stub model (median)", f"{call_ms:.3f} ms", ""),
        ("100 concurrent cached ai nodes, wall time", f"{concurrent:.1f} ms", "< 100 ms"),
        ("  the same, opening 100 Redis connections first", f"{cold:.1f} ms", ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    redis = None
    url = os.environ.get("FLOWLOOM_REDIS_URL")
    if not url:
        redis = RedisProcess().start()
        url = redis.url
    stub = ModelStub()
    try:
        with ServerThread(stub.app()) as server:
            rows = run_sync(measure(url, f"{server.url}/v1", args.n))
    finally:
        if redis is not None:
            redis.kill()
    print_table(rows)


if __name__ == "__main__":
    main()
