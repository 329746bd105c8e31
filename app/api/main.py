"""The FastAPI app: wiring only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from flowloom.app.api import docs, errors
from flowloom.app.api.access_log import AccessLog
from flowloom.app.api.edge import CrashAsProblem, crash_outside_the_middleware
from flowloom.app.api.event_docs import event_schemas
from flowloom.app.api.manager import RunManager, purge_forever
from flowloom.app.api.middleware import FlowloomMiddleware
from flowloom.app.api.routes import executions, health, workflows
from flowloom.app.logs import install_record_factory
from flowloom.app.queue import QueueManager
from flowloom.app.services import open_services
from flowloom.app.settings import Settings, load_settings
from flowloom.app.stores import open_store
from flowloom.app.tuning import freeze_startup_heap, thaw_heap
from flowloom.app.ui import routes as ui

log = logging.getLogger("flowloom.api")


def _document_problems(app: FastAPI) -> None:
    """Put the Problem schema into the OpenAPI document the error responses refer to."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = errors.Problem.model_json_schema()
            components.update(event_schemas())  # the data of the SSE route's events
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            store = open_store(settings)
            stack.push_async_callback(store.close)
            services = await stack.enter_async_context(open_services(settings))
            manager: RunManager | QueueManager
            if settings.queue_url:
                manager = QueueManager(store, services, settings.queue_url,
                                       settings.stale_after_s)
                await manager.connect()
            else:
                manager = RunManager(store, services, settings.workers, settings.stale_after_s)
            stack.push_async_callback(manager.close)
            app.state.settings, app.state.store, app.state.manager = settings, store, manager
            recovered = await manager.recover()
            if recovered:
                log.info("recovered %d run(s) left unfinished by a stopped process", recovered)
            watcher = asyncio.create_task(manager.keep_recovering())
            stack.callback(watcher.cancel)
            purger = asyncio.create_task(
                purge_forever(store, timedelta(days=settings.retention_days)))
            stack.callback(purger.cancel)
            freeze_startup_heap()
            stack.callback(thaw_heap)
            yield

    app = FastAPI(title="Flowloom", version="0.1.0", lifespan=lifespan,
                  description="Run JSON workflow DAGs, durably.",
                  docs_url=None, redoc_url=None)  # docs.install serves them without a CDN
    errors.install(app)
    docs.install(app)
    for router in (workflows.router, executions.router, health.router):
        app.include_router(router, responses=errors.PROBLEM_RESPONSES)
    ui.install(app)
    _document_problems(app)
    keys = [k.strip() for k in (settings.api_keys or "").split(",") if k.strip()]
    app.add_middleware(CrashAsProblem)  # inside FlowloomMiddleware: its 500s get the id
    app.add_middleware(FlowloomMiddleware, api_keys=keys)
    app.add_middleware(AccessLog)  # added last: outermost, so it sees every answer
    # Taken by Starlette's ServerErrorMiddleware, around all of these.
    app.add_exception_handler(Exception, crash_outside_the_middleware)
    install_record_factory()
    return app
