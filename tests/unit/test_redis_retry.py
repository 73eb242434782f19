"""The fleet's Redis client does not run a command twice when the reply is lost (review 3.2).

A real TCP proxy sits between the fleet's client and the session's real redis-server; it forwards
the INCR to Redis and then drops the connection instead of relaying the reply."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from harness.redis_server import RedisServer
from shared.redis_conn import make_client


class ReplyDroppingProxy:
    """Forwards every byte both ways, except: once a client chunk containing `marker` has been
    forwarded to Redis, the next bytes from Redis are not relayed and the client's connection is
    closed (the command ran; its reply is lost). Only the first such command is dropped."""

    def __init__(self, upstream_port: int, marker: bytes) -> None:
        self.upstream_port = upstream_port
        self.marker = marker
        self.dropped = 0
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        armed = asyncio.Event()

        async def up() -> None:
            while data := await creader.read(65536):
                uwriter.write(data)
                await uwriter.drain()
                if self.dropped == 0 and self.marker in data:
                    self.dropped += 1
                    armed.set()
            uwriter.close()

        async def down() -> None:
            while data := await ureader.read(65536):
                if armed.is_set():  # the marked command's reply: drop it and the connection
                    cwriter.close()
                    uwriter.close()
                    return
                cwriter.write(data)
                await cwriter.drain()
            cwriter.close()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        self._tasks.update(tasks)
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks)


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
