"""A fault-injecting TCP proxy for tests: a real socket between a client and a real server."""

from __future__ import annotations

import asyncio
import contextlib


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
