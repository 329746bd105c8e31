"""Configuration from the environment (and `.env`), as cli-and-config.md lists it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flowloom.graphs.errors import WorkflowError
from flowloom.graphs.limits import MAX_DESCENDANT_RUNS, MAX_RUN_STATE_BYTES

REQUEST_HEAD_TIMEOUT_S = 10.0  # a request's line and headers, from its first byte


class SettingsError(WorkflowError):
    """A bad configuration value; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOWLOOM_", env_file=".env",
                                      extra="ignore", populate_by_name=True)

    store: str = "sqlite:///.flowloom/flowloom.db"
    redis_url: str | None = None
    queue_url: str | None = None
    llm_cache_ttl_s: int = Field(default=3600, ge=0)
    openai_api_key: str | None = Field(default=None, validation_alias=AliasChoices(
        "OPENAI_API_KEY", "openai_api_key"))
    openai_base_url: str | None = Field(default=None, validation_alias=AliasChoices(
        "OPENAI_BASE_URL", "openai_base_url"))
    api_keys: str | None = None
    http_allow_private: bool = False
    http_allow_hosts: str | None = None  # "host:port,..." exempt from the SSRF guard
    http_max_response_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    composio_base_url: str | None = Field(default=None, validation_alias=AliasChoices(
        "COMPOSIO_BASE_URL", "composio_base_url"))
    composio_api_key: str | None = Field(default=None, validation_alias=AliasChoices(
        "COMPOSIO_API_KEY", "composio_api_key"))
    smtp_url: str | None = None
    retention_days: int = Field(default=7, ge=1)
    workers: int = Field(default=16, ge=1, le=256)  # async runs at once in the API process
    stale_after_s: float = Field(default=10.0, ge=2)  # a run unwritten this long is orphaned
    # A request's line and headers must arrive within this (slowloris); 408 past it.
    request_head_timeout_s: float = Field(default=REQUEST_HEAD_TIMEOUT_S, gt=0, le=3600)
    # unset: info for `serve` and `worker`, warning for the commands that show progress
    log_level: Literal["debug", "info", "warning", "error", "critical"] | None = None
    # All outputs one run's nodes may produce, about as JSON (loop items included).
    max_run_state_bytes: int = Field(default=MAX_RUN_STATE_BYTES, ge=1024)
    # Child runs of `subworkflow` nodes under one root run, all levels counted.
    max_descendant_runs: int = Field(default=MAX_DESCENDANT_RUNS, ge=1)

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "mongodb://", "mongodb+srv://")):
            raise ValueError("must start with sqlite:/// or mongodb://")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return (value.strip().lower() or None) if isinstance(value, str) else value

    @field_validator("redis_url", "queue_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return _url(value, ("redis", "rediss", "unix"), "redis://HOST:PORT/DB")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        return _url(value, ("smtp", "smtps"), "smtp://user:pass@host:port")

    @property
    def sqlite_path(self) -> Path | None:
        return Path(self.store.removeprefix("sqlite:///")) if self.store.startswith(
            "sqlite:///") else None


def _url(value: str | None, schemes: tuple[str, ...], example: str) -> str | None:
    """An URL of one of `schemes`, with a numeric port and (for Redis) database."""
    if not value:
        return None
    url = urlsplit(value)
    if url.scheme not in schemes:
        raise ValueError(f"must be an URL like {example}")
    try:
        url.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError("the port must be a number from 0 to 65535") from None
    database = url.path.strip("/")
    if url.scheme in ("redis", "rediss") and database and not database.isdigit():
        raise ValueError("the database (the URL's path) must be a number")
    return value


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value raises one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "?"
        var = (name.upper() if name.upper().startswith(("OPENAI", "COMPOSIO"))
               else f"FLOWLOOM_{name.upper()}")
        message = err["msg"].removeprefix("Value error, ")  # pydantic's, for our own checks
        raise SettingsError(f"{var}: {message}") from None
