"""A STAND-IN for MongoDB: mongomock behind an async shim shaped like PyMongo's
`AsyncMongoClient`. No MongoDB server can be installed on these machines; tests that use
this are marked `standin`, and the README lists what was proven only here."""

from __future__ import annotations

from typing import Any

import mongomock
from mongomock.collection import BulkOperationBuilder

_add_update = BulkOperationBuilder.add_update


def _add_update_ignoring_sort(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
    # PyMongo 4.20's UpdateOne passes `sort`, which mongomock 4.3 does not take; our
    # updates match on unique keys, so the order is moot.
    return _add_update(self, *args, **kwargs)


BulkOperationBuilder.add_update = _add_update_ignoring_sort


class _Cursor:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def sort(self, *args: Any, **kwargs: Any) -> _Cursor:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def limit(self, n: int) -> _Cursor:
        self._cursor = self._cursor.limit(n)
        return self

    async def to_list(self, length: int | None = None) -> list[Any]:
        items = list(self._cursor)
        return items if length is None else items[:length]


class _Collection:
    def __init__(self, collection: Any) -> None:
        self._c = collection

    async def create_index(self, keys: Any, **kwargs: Any) -> str:
        from pymongo.errors import OperationFailure
        try:
            return str(self._c.create_index(keys, **kwargs))
        except OperationFailure as exc:
            if "already exists with different options" in str(exc):
                # a real server says IndexOptionsConflict (85); mongomock gives no code
                raise OperationFailure(str(exc), code=85) from None
            raise

    def find(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self._c.find(*args, **kwargs))

    async def aggregate(self, pipeline: list[Any]) -> _Cursor:
        return _Cursor(self._c.aggregate(pipeline))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._c, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)
        return call


class _Database:
    def __init__(self, db: Any) -> None:
        self._db = db

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(self._db[name])

    def __getattr__(self, name: str) -> _Collection:
        return _Collection(self._db[name])

    async def command(self, command: dict[str, Any]) -> dict[str, Any]:
        return {"ok": 1}  # collMod of a TTL index: mongomock keeps no TTL to change


class AsyncMongoStandIn:
    def __init__(self) -> None:
        self.sync = mongomock.MongoClient(tz_aware=True)

    def __getitem__(self, name: str) -> _Database:
        return _Database(self.sync[name])

    def sync_client(self) -> Any:
        """A sync client on the same fake server, for MongoDBSaver."""
        client = mongomock.MongoClient(tz_aware=True, _store=self.sync._store)
        client.close = lambda: None  # the fake server outlives each checkpointer block
        return client

    async def close(self) -> None:
        return None
