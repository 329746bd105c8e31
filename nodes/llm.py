"""Chat completions through langchain-openai: any OpenAI-compatible server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from flowloom.graphs.errors import NodeError
from flowloom.nodes.net import retry_after_seconds

DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the openai client's, when none is set

if TYPE_CHECKING:  # the model clients load with the first call: most runs never make one
    import httpx
    import openai
    from langchain_openai import ChatOpenAI


def _error(exc: openai.OpenAIError, base_url: str | None = None,
           has_key: bool = True) -> NodeError:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return NodeError(f"model call timed out: {exc}", kind="TimeoutError", retriable=True)
    if isinstance(exc, openai.APIConnectionError):
        unset = [name for name, value in (("OPENAI_BASE_URL", base_url),
                                          ("OPENAI_API_KEY", has_key)) if not value]
        hint = f" ({' and '.join(unset)} not set)" if unset else ""
        return NodeError(f"cannot reach the model endpoint {base_url or DEFAULT_BASE_URL}"
                         f"{hint}: {exc}", kind="NetworkError", retriable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = retry_after_seconds(exc.response.headers.get("retry-after"))
        return NodeError(f"model endpoint answered HTTP {status}: {exc.message}",
                         kind="ModelError", retriable=status in (408, 429) or status >= 500,
                         retry_after_s=retry_after)
    return NodeError(f"model call failed: {exc}", kind="ModelError")


class OpenAIChat:
    """Builds one ChatOpenAI per distinct (model, parameters) and reuses it."""

    def __init__(self, *, base_url: str | None, api_key: str | None,
                 http: httpx.AsyncClient | None = None, timeout_s: float = 300) -> None:
        self.base_url = base_url
        self.http = http  # our client: langchain-openai's default one is bound to one loop
        self.has_key = bool(api_key)
        self.api_key = api_key or "not-needed"  # local OpenAI-compatible servers ignore it
        self.timeout_s = timeout_s
        self._models: dict[tuple[Any, ...], ChatOpenAI] = {}

    def _model(self, request: dict[str, Any]) -> ChatOpenAI:
        key = (request["model"], request.get("temperature"), request.get("max_tokens"))
        model = self._models.get(key)
        if model is None:
            from langchain_openai import ChatOpenAI

            options: dict[str, Any] = {"max_tokens": request.get("max_tokens")}
            model = self._models[key] = ChatOpenAI(
                model=request["model"], temperature=request.get("temperature"),
                base_url=self.base_url, api_key=SecretStr(self.api_key),
                max_retries=0,  # retries belong to the node's policy
                timeout=self.timeout_s, http_async_client=self.http, **options,
            )
        return model

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        import openai
        from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

        messages: list[BaseMessage] = [
            SystemMessage(m["content"]) if m["role"] == "system" else HumanMessage(m["content"])
            for m in request["messages"]]
        kwargs: dict[str, Any] = {}
        if request.get("response_format") == "json":
            kwargs["response_format"] = {"type": "json_object"}
        try:
            message = await self._model(request).ainvoke(messages, **kwargs)
        except openai.OpenAIError as exc:
            raise _error(exc, self.base_url, self.has_key) from None
        usage = getattr(message, "usage_metadata", None) or {}
        usage = {k: usage[k] for k in ("input_tokens", "output_tokens", "total_tokens")
                 if k in usage}
        return {"text": message.text, "usage": usage,
                "model": message.response_metadata.get("model_name", request["model"])}
