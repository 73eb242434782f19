"""Session fixtures: a real redis-server on a free port, flushed between tests, a factory for
fleets of real service processes, and one for the whole fleet under honcho."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from harness.fleet import Fleet
from harness.honcho import ArmedFleetFactory, HonchoFleet, armed_fleet
from harness.processes import ServiceProcess
from harness.redis_cluster import LocalCluster, free_cluster_base, ports_from
from harness.redis_server import RedisServer
from shared.keys import Keys
from shared.scripts import Scripts


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


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def scripts(redis: Redis) -> Scripts:
    registry = Scripts(redis)
    await registry.load_all(redis)
    return registry


@pytest.fixture
def fleet(
    redis_server: RedisServer, prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Fleet]:
    """Real service processes on free ports; the test starts the ones it needs."""
    import redis as sync_redis

    sync_redis.Redis.from_url(redis_server.url).flushdb()
    fleet = Fleet(redis_server.url, prefix, tmp_path / "logs")
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
