from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient
from redis.asyncio import Redis

from flowloom.app.records import RunRecord
from flowloom.app.services import open_services
from flowloom.app.settings import Settings, load_settings
from flowloom.app.stores.base import Store
from flowloom.app.stores.mongo import MongoStore
from flowloom.app.stores.sqlite import SqliteStore
from flowloom.nodes.services import Services
from tests.conftest import Runner
from tests.mongo_server import secantus_server
from tests.servers import (
    FlakyServer,
    ModelStub,
    RedisProcess,
    SchemaHost,
    ServerThread,
    SmtpServer,
)

_databases = itertools.cycle(range(1, 16))

# The store backends a suite runs on: the embedded SQLite file and MongoDB on SecantusDB
# (a real wire-protocol server). `pytestmark = ON_EVERY_STORE` runs a module on both.
ON_EVERY_STORE = pytest.mark.parametrize("store_url", ["sqlite", "mongodb"], indirect=True)


@pytest.fixture(scope="session")
def secantus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SecantusDB on a free loopback port, in memory, for the whole session."""
    log = tmp_path_factory.mktemp("secantus") / "server.log"
    try:
        server = secantus_server(log)
        uri = server.__enter__()
    except RuntimeError as exc:
        pytest.skip(f"SecantusDB cannot start here: {exc}")
    try:
        yield uri
    finally:
        server.__exit__(None, None, None)


BACKENDS = [
    "sqlite",
    "mongodb-secantus",
    pytest.param("mongodb", marks=pytest.mark.skipif(
        not os.environ.get("FLOWLOOM_TEST_MONGODB_URI"),
        reason="FLOWLOOM_TEST_MONGODB_URI is not set: no MongoDB server of your own")),
]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store of each backend, for the contract suites: SQLite, MongoDB on SecantusDB,
    and a MongoDB server of your own when FLOWLOOM_TEST_MONGODB_URI is set."""
    if request.param == "sqlite":
        store: Store = SqliteStore(tmp_path / "contract.db")
    else:
        base = (request.getfixturevalue("secantus_uri") if request.param == "mongodb-secantus"
                else os.environ["FLOWLOOM_TEST_MONGODB_URI"]).rstrip("/")
        store = MongoStore(f"{base}/flowloom_test_{uuid.uuid4().hex[:8]}")
    yield store
    if isinstance(store, MongoStore):
        await store.client.drop_database(store.db_name)
    await store.close()


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """FLOWLOOM_STORE for this test: a SQLite file in its folder (the default), or a
    database of its own on SecantusDB, dropped afterwards."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield f"sqlite:///{tmp_path / 'flowloom.db'}"
        return
    base = request.getfixturevalue("secantus_uri")
    name = f"flowloom_test_{uuid.uuid4().hex[:8]}"
    yield f"{base}/{name}"
    with MongoClient(base) as client:
        client.drop_database(name)


@pytest.fixture(scope="session")
def redis_base_url() -> Iterator[str]:
    """FLOWLOOM_TEST_REDIS_URL when set, else a throwaway real redis-server."""
    url = os.environ.get("FLOWLOOM_TEST_REDIS_URL")
    if url:
        yield url.rsplit("/", 1)[0] if url.count("/") > 2 else url
        return
    server = RedisProcess().start()
    yield server.url.rsplit("/", 1)[0]
    server.kill()


@pytest.fixture
async def redis_url(redis_base_url: str) -> AsyncIterator[str]:
    """A database of its own for this test, flushed afterwards."""
    url = f"{redis_base_url}/{next(_databases)}"
    client = Redis.from_url(url)
    await client.flushdb()
    yield url
    await client.flushdb()
    await client.aclose()


@pytest.fixture(scope="session")
def model() -> Iterator[ModelStub]:
    stub = ModelStub()
    with ServerThread(stub.app()) as server:
        stub.url = f"{server.url}/v1"  # type: ignore[attr-defined]
        yield stub


@pytest.fixture
def model_stub(model: ModelStub) -> ModelStub:
    model.calls, model.requests, model.script = 0, [], []
    return model


@pytest.fixture(scope="session")
def flaky_server() -> Iterator[tuple[FlakyServer, str]]:
    server = FlakyServer()
    with ServerThread(server.app()) as thread:
        yield server, thread.url


@pytest.fixture
def web(flaky_server: tuple[FlakyServer, str]) -> tuple[FlakyServer, str]:
    flaky_server[0].hits.clear()
    return flaky_server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture
def node_settings(settings: Settings, model: ModelStub, smtp: SmtpServer,
                  flaky_server: tuple[FlakyServer, str]) -> Settings:
    return load_settings(store=settings.store, openai_base_url=model.url,  # type: ignore[attr-defined]
                         openai_api_key="test-key", smtp_url=smtp.url,
                         http_allow_private=True, composio_base_url=flaky_server[1],
                         composio_api_key="composio-test-key")


@pytest.fixture
async def services(node_settings: Settings) -> AsyncIterator[Services]:
    async with open_services(node_settings) as built:
        yield built


class ServiceRunner:
    """Runs documents with real services pointed at the local test servers."""

    def __init__(self, runner: Runner, services: Services) -> None:
        self.runner = runner
        self.services = services

    async def __call__(self, document: object, inputs: dict | None = None,
                       **kwargs: object) -> RunRecord:
        return await self.runner(document, inputs, services=self.services, **kwargs)

    @property
    def events(self) -> list[dict]:
        return self.runner.events


@pytest.fixture
def run_with(run: Runner, services: Services) -> ServiceRunner:
    return ServiceRunner(run, services)


@pytest.fixture
def schema_host() -> Iterator[tuple[SchemaHost, str]]:
    host = SchemaHost()
    with ServerThread(host.app()) as thread:
        yield host, thread.url
