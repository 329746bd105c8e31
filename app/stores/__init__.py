"""Store backends, chosen by `FLOWLOOM_STORE`."""

from __future__ import annotations

from app.settings import Settings
from app.stores.base import Store, StoredWorkflow
from app.stores.sqlite import SqliteStore
from graphs.errors import StoreError


def open_store(settings: Settings) -> Store:
    """The backend `FLOWLOOM_STORE` names: a SQLite file, or a MongoDB server."""
    path = settings.sqlite_path
    if path is not None:
        return SqliteStore(path)
    from app.stores.mongo import MongoStore  # pymongo is only needed for this backend
    return MongoStore(settings.store, retention_days=settings.retention_days)


__all__ = ["SqliteStore", "Store", "StoreError", "StoredWorkflow", "open_store"]
