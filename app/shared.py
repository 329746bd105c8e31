"""One store and one set of services per settings and event loop, for the Python API's
calls that bring none of their own. Opening a store per call cost its connection and a
recompile of the workflow for the new store's saver (graphs are cached per saver).

Per event loop because MongoDB's async client is bound to the loop it started on. Each
entry lives in a suspended async generator: `asyncio.run` (and uvloop's runner) close
a loop's async generators before closing it, which closes the store on its own loop.
What is still open at interpreter exit is closed then, on its loop if it can be."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from flowloom.app.services import make_services
from flowloom.app.settings import Settings
from flowloom.app.stores import Store, open_store
from flowloom.nodes.services import Services

Key = tuple[asyncio.AbstractEventLoop, str]
_OPEN: dict[Key, tuple[AsyncGenerator[tuple[Store, Services], None], asyncio.Future[Any]]] = {}


async def _lifetime(settings: Settings, key: Key) -> AsyncGenerator[tuple[Store, Services], None]:
    store = open_store(settings)
    services, close_services = make_services(settings)
    try:
        yield store, services  # suspended here until the loop shuts its generators down
    finally:
        _OPEN.pop(key, None)
        try:
            await close_services()
        finally:
            await store.close()


async def shared_resources(settings: Settings) -> tuple[Store, Services]:
    """This loop's store and services for `settings`, opened on first use."""
    loop = asyncio.get_running_loop()
    key = (loop, settings.model_dump_json())
    entry = _OPEN.get(key)
    if entry is not None:
        return await asyncio.shield(entry[1])  # type: ignore[no-any-return]
    for stale in [k for k in _OPEN if k[0].is_closed()]:  # closed without shutting down
        _OPEN.pop(stale, None)
    holder = _lifetime(settings, key)
    ready: asyncio.Future[Any] = loop.create_future()
    _OPEN[key] = (holder, ready)
    try:
        opened = await anext(holder)
    except BaseException as exc:
        _OPEN.pop(key, None)
        ready.set_exception(exc)
        ready.exception()  # retrieved: callers waiting on it get it raised
        raise
    ready.set_result(opened)
    return opened


def open_count() -> int:
    """How many loop-and-settings entries are open (for tests)."""
    return len(_OPEN)


@atexit.register
def _close_at_exit() -> None:
    for (loop, _), (holder, _ready) in list(_OPEN.items()):
        if loop.is_closed() or loop.is_running():
            continue  # nothing can run on it now; the process ends anyway
        with contextlib.suppress(Exception):
            loop.run_until_complete(holder.aclose())
    _OPEN.clear()
