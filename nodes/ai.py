from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from flowloom.graphs.errors import NodeError
from flowloom.graphs.nodetype import NodeConfig, NodeType
from flowloom.nodes.services import Context


class AiConfig(NodeConfig):
    prompt: str
    system_prompt: str | None = None
    model: str = "gpt-4o-mini"
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    response_format: Literal["text", "json"] = "text"
    cache: bool = True
    cache_ttl_s: int | None = Field(default=None, ge=0)


def request_digest(request: dict[str, Any]) -> str:
    """SHA-256 of the canonical request: sorted keys, no whitespace, UTF-8."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_json_answer(text: str) -> Any:
    stripped = text.strip()
    if stripped.startswith("```"):  # models like to fence JSON
        stripped = stripped.strip("`").removeprefix("json").strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise NodeError(f"model answer is not JSON ({exc.msg} at column {exc.colno}): "
                        f"{text[:200]!r}", kind="InvalidJSON") from None


class Ai(NodeType):
    """Calls a chat model; output the text, or the parsed JSON with `response_format: json`.
    Answers are cached under the SHA-256 of the canonical request."""

    name = "ai"
    Config = AiConfig
    templates = ("prompt", "system_prompt")

    async def run(self, config: AiConfig, ctx: Context) -> Any:
        llm = ctx.services.llm
        if llm is None:
            raise NodeError("no model client in the runtime context", node_id=ctx.node_id)
        messages = []
        if config.system_prompt:
            messages.append({"role": "system", "content": str(
                await ctx.render(config.system_prompt, field="system_prompt"))})
        messages.append({"role": "user", "content": str(await ctx.render(config.prompt,
                                                                   field="prompt"))})
        request = {"endpoint": getattr(llm, "base_url", None), "model": config.model,
                   "temperature": config.temperature, "max_tokens": config.max_tokens,
                   "messages": messages, "response_format": config.response_format}

        async def call() -> dict[str, Any]:
            answer: dict[str, Any] = await llm.complete(request)
            if config.response_format == "json":
                parse_json_answer(answer["text"])  # a bad answer is not cached
            return answer

        cache = ctx.services.cache
        if config.cache and cache is not None:
            ttl = config.cache_ttl_s
            if ttl is None:
                ttl = ctx.services.settings.llm_cache_ttl_s
            answer, cached = await cache.get_or_call(request_digest(request), ttl, call)
        else:
            answer, cached = await call(), False
        ctx.meta.update(cached=cached, model=answer.get("model"), usage=answer.get("usage"))
        text = answer["text"]
        return parse_json_answer(text) if config.response_format == "json" else text
