"""Session fixtures: a real redis-server on a free port, flushed between tests, a factory for
fleets of real service processes, and one for the whole fleet under honcho.

Backends. A module (or a test) marked `@pytest.mark.backends("single", "cluster")` runs each of
its tests once per backend: `redis_url`, the `redis` client and the `fleet`'s services then point
at the single redis-server or at the session's 3-master Redis Cluster (`redis_cluster`). A test
marked `backends("single")` inside such a module runs on the single Redis only. Tests that do not
opt in get the single Redis, as before, with unchanged ids. On the cluster nothing is flushed (the
cluster is shared by the session): the test's own key prefix keeps its keys apart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from harness.browser import launched
from harness.fleet import Fleet
from harness.honcho import ArmedFleetFactory, HonchoFleet, armed_fleet
from harness.processes import ServiceProcess
from harness.redis_clients import SyncRedis, sync_client
from harness.redis_cluster import LocalCluster, free_cluster_base, ports_from
from harness.redis_server import RedisServer
from shared.keys import Keys
from shared.redis_conn import connect_fleet
from shared.scripts import Scripts

BACKENDS = ("single", "cluster")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends(*names): run the test once per backend named ('single', 'cluster'); the "
        "closest marker wins, so a test can narrow its module's",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is None or "backend" not in metafunc.fixturenames:
        return
    unknown = set(marker.args) - set(BACKENDS)
    if unknown or not marker.args:
        raise pytest.UsageError(f"backends{marker.args}: each must be one of {BACKENDS}")
    metafunc.parametrize("backend", list(marker.args), indirect=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real Redis Cluster (3 masters + 3 replicas, harness/redis_cluster.py) on free ports,
    started the first time a test asks for it and kept for the session."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), ports_from(free_cluster_base()))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so nothing leaks between tests even without a flush."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """'single' unless the test opted into backends (see the module docstring)."""
    return str(getattr(request, "param", "single"))


@pytest.fixture
def redis_url(backend: str, request: pytest.FixtureRequest) -> str:
    """The URL of the test's backend: the single redis-server, or a node of the cluster (the
    fleet's user; its client discovers the other nodes)."""
    if backend == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest_asyncio.fixture
async def redis(redis_url: str, backend: str) -> AsyncIterator[Redis]:
    """An async client of the backend: on the cluster the fleet's own cluster client
    (`shared.redis_conn.connect`), which offers the commands the tests use on one shard's keys."""
    if backend == "cluster":
        client = await connect_fleet(redis_url)
    else:
        client = Redis.from_url(redis_url, decode_responses=True)
        await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[SyncRedis]:
    """A synchronous client of the backend (a RedisCluster on the cluster), decoded replies."""
    client = sync_client(redis_url)
    yield client
    client.close()


@pytest_asyncio.fixture
async def scripts(redis: Redis) -> Scripts:
    registry = Scripts(redis)
    await registry.load_all(redis)
    return registry


@pytest.fixture
def fleet(
    redis_url: str, backend: str, prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Fleet]:
    """Real service processes on free ports, on the test's backend; the test starts the ones it
    needs."""
    import redis as sync_redis

    if backend == "single":
        with sync_redis.Redis.from_url(redis_url) as flush:
            flush.flushdb()
    fleet = Fleet(redis_url, prefix, tmp_path / "logs")
    yield fleet
    failed = getattr(request.node, "rep_call", None)
    fleet.stop_all()
    if failed is not None and failed.failed:
        for proc in fleet.procs.values():
            print(f"----- {proc.name} log -----\n{proc.logs()}")


@pytest.fixture
def training(fleet: Fleet) -> ServiceProcess:
    """The training service alone, ready."""
    fleet.start("training")
    return fleet["training"]


@pytest.fixture(scope="session")
def honcho_fleet(tmp_path_factory: pytest.TempPathFactory) -> ArmedFleetFactory:
    """`with honcho_fleet(extra_env) as fleet:` the Procfile under honcho, armed, its log printed
    when the block fails, stopped after. Session-scoped, so module fixtures can share a fleet."""

    def start(
        extra_env: dict[str, str] | None = None, **kw: Any
    ) -> AbstractContextManager[HonchoFleet]:
        return armed_fleet(extra_env, log_dir=tmp_path_factory.mktemp("honcho"), **kw)

    return start


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Chromium for the Control Room's browser tests (skipped without it)."""
    with launched() as browser:
        yield browser
