"""Dependencies of the routes, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from flowloom.app.api.manager import RunManager
from flowloom.app.records import EXECUTION_ID_PATTERN
from flowloom.app.settings import Settings
from flowloom.app.stores.base import Store


async def _store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def _manager(request: Request) -> RunManager:  # or a QueueManager, of the same face
    return request.app.state.manager  # type: ignore[no-any-return]


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(_store)]
ManagerDep = Annotated[RunManager, Depends(_manager)]
SettingsDep = Annotated[Settings, Depends(_settings)]
ExecutionIdPath = Annotated[str, Path(pattern=EXECUTION_ID_PATTERN,
                                      description="an execution id")]
