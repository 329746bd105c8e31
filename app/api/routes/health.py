from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from flowloom.app.api.deps import ManagerDep, SettingsDep, StoreDep
from flowloom.app.llm_cache import RedisLLMCache
from flowloom.app.stores.base import RunQuery
from flowloom.graphs.redact import redact_text

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(store: StoreDep, manager: ManagerDep, settings: SettingsDep) -> JSONResponse:
    services: dict[str, Any] = {}
    try:
        await store.list_runs(RunQuery(limit=1))
        services["store"] = {"ok": True, "backend": settings.store.split(":", 1)[0]}
    except Exception as exc:  # health reports it; it must not fail itself
        services["store"] = {"ok": False, "error": redact_text(str(exc))}
    cache = manager.services.cache
    if isinstance(cache, RedisLLMCache):
        try:
            await cache.redis.ping()
            services["redis"] = {"ok": True}
        except Exception as exc:
            services["redis"] = {"ok": False, "error": type(exc).__name__}
    else:
        services["redis"] = {"ok": True, "configured": False}
    if settings.queue_url:
        try:
            await manager.pool.ping()  # type: ignore[attr-defined]
            services["queue"] = {"ok": True, "mode": "arq"}
        except Exception as exc:
            services["queue"] = {"ok": False, "mode": "arq", "error": type(exc).__name__}
    else:
        services["queue"] = {"ok": True, "mode": "in-process", "workers": manager.workers,
                             "running": len(manager.tasks)}
    ok = all(s["ok"] for s in services.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "services": services},
                        status_code=200 if services["store"]["ok"] else 503)
