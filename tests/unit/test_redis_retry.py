"""The fleet's Redis client does not run a command twice when the reply is lost (review 3.2).

A real TCP proxy sits between the fleet's client and the session's real redis-server; it forwards
the INCR to Redis and then drops the connection instead of relaying the reply."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from harness.proxy import ReplyDroppingProxy
from harness.redis_server import RedisServer
from shared.redis_conn import make_client


@pytest.mark.asyncio
async def test_incr_runs_once_when_its_reply_is_lost(
    redis_server: RedisServer, redis: Redis, prefix: str
) -> None:
    proxy = ReplyDroppingProxy(redis_server.port, b"INCR")
    await proxy.start()
    client = make_client(f"redis://127.0.0.1:{proxy.port}/0")
    key = f"{prefix}:counter"
    try:
        await client.ping()  # a pooled, established connection, as in a running service
        with pytest.raises(RedisConnectionError):
            await client.incr(key)
        assert proxy.dropped == 1
        assert await redis.get(key) == "1"  # ran once: not re-sent after the lost reply
        # The client is usable again at once: the next command reconnects.
        assert await client.incr(key) == 2
    finally:
        await client.aclose()
        await proxy.close()


@pytest.mark.asyncio
async def test_pooled_connections_ride_out_a_redis_restart(tmp_path: Path) -> None:
    """Not re-sending after a lost reply must not cost the restart tolerance: a connection that
    Redis closed while it idled in the pool is reconnected before it is used, not sent a command
    that fails."""
    server = RedisServer(tmp_path, appendonly=True).start()
    client = make_client(server.url)
    try:
        await asyncio.gather(*(client.incr("n") for _ in range(10)))  # several pooled connections
        server.kill()
        server = RedisServer(tmp_path, port=server.port, appendonly=True).start()
        await asyncio.sleep(0.2)  # the closed connections' EOF reaches the client
        for _ in range(20):  # each would take a stale pooled connection first
            assert int(await client.get("n")) == 10
        pipe = client.pipeline(transaction=False)
        pipe.get("n")
        assert await pipe.execute() == ["10"]
    finally:
        await client.aclose()
        server.stop()
