"""Store backends, chosen by `FLOWLOOM_STORE`."""

from __future__ import annotations

from app.settings import Settings
from app.stores.base import Store, StoredWorkflow
from app.stores.sqlite import SqliteStore
from graphs.errors import StoreError


def open_store(settings: Settings) -> Store:
    path = settings.sqlite_path
    if path is not None:
        return SqliteStore(path)
    raise StoreError(f"FLOWLOOM_STORE={settings.store}: the MongoDB backend is not part of "
                     "this build yet (see issue 4); use sqlite:///PATH")


__all__ = ["SqliteStore", "Store", "StoreError", "StoredWorkflow", "open_store"]
