"""Store backends, chosen by `FLOWLOOM_STORE`."""

from __future__ import annotations

from flowloom.app.settings import Settings
from flowloom.app.stores.base import Store, StoredWorkflow
from flowloom.app.stores.errors import StoreError
from flowloom.app.stores.sqlite import SqliteStore


def open_store(settings: Settings) -> Store:
    """The backend `FLOWLOOM_STORE` names: a SQLite file, or a MongoDB server."""
    path = settings.sqlite_path
    if path is not None:
        return SqliteStore(path)
    from flowloom.app.stores.mongo import MongoStore  # pymongo is only needed for this backend
    return MongoStore(settings.store)


__all__ = ["SqliteStore", "Store", "StoreError", "StoredWorkflow", "open_store"]
