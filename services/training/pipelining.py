"""Automatic pipelining of the single-round path's Redis commands.

Each `POST /round` needs one EVALSHA (and, on a cache miss, one HMGET). Sent one by one through
redis-py's client, every command pays the pool's get/release, a `wait_for` on the write, and a
send syscall: measured at ~200 µs of the training process's CPU per commit, more than the round
itself. Here the commands issued by every request during one event-loop turn are queued and sent
as ONE pipelined write on a connection this object owns, and their replies are read back in order.
So the per-command cost is packing and parsing only, and under load one syscall carries dozens of
commits.

Ordering: a connection runs one batch at a time (send, then read every reply), so replies can
never be misattributed; commands queued while every connection is busy go out together in the
next batch. Commands of different batches may run in either order — callers that need an order
(the rounds of one learner) already serialise themselves (training's per-learner lock).

Retries: nothing is ever sent twice. A connection the server closed while it idled (a Redis
restart, CLIENT KILL) has already seen its end of stream by the time a batch wants it, so it is
replaced before anything is written. Once a batch is written, a lost connection fails every
command still owed a reply: Redis may have run them (a commit whose reply was lost may have been
applied), so the caller gets the error (a 503; a retry with the same Idempotency-Key replays the
round instead of committing another) rather than a blind resend.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from shared.logging import get_logger
from shared.scripts import ScriptCall, evalsha_each

log = get_logger(__name__)


_pack = hiredis.pack_command


class AutoPipeline:
    """`await pipe.execute("HMGET", key, "v", "s")` — batched with every other command queued in
    the same event-loop turn."""

    def __init__(self, redis: Redis, *, connections: int = 2, max_batch: int = 512) -> None:
        self._redis = redis
        self._max_batch = max_batch
        # Connections of the same pool settings (URL, auth, db, timeouts, decode_responses), but
        # owned here, not checked out per batch: a batch is send + read, nothing else.
        self._idle: list[AbstractConnection] = [
            # redis-py leaves ConnectionPool.make_connection unannotated (it returns a Connection).
            redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            for _ in range(connections)
        ]
        self._all = list(self._idle)
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.batches = 0  # batches sent and commands carried: their ratio is the batching factor
        self.commands = 0

    def execute(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply (a ResponseError reply is raised)."""
        if self._closed:
            raise RuntimeError("AutoPipeline is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, fut))
        if not self._scheduled and self._idle:
            # call_soon, not now: the other requests handled in this loop turn add theirs first.
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    async def evalsha(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a registered script (redis-py AsyncScript) by SHA, loading it on NOSCRIPT (after a
        Redis restart or SCRIPT FLUSH) and retrying once: a NOSCRIPT reply means it did not run."""
        cmd = (len(keys), *keys, *args)
        if script.sha:
            try:
                return await self.execute("EVALSHA", script.sha, *cmd)
            except NoScriptError:
                pass
        script.sha = await self._redis.script_load(script.script)
        return await self.execute("EVALSHA", script.sha, *cmd)

    async def evalsha_many(self, script: Any, calls: list[ScriptCall]) -> list[Any]:
        """Run a script once per (keys, args), all queued in this loop turn (so they travel in
        one batch); see shared.scripts.evalsha_each for NOSCRIPT and errors."""

        async def send(sha: str, batch: list[ScriptCall]) -> list[Any]:
            futures = [self.execute("EVALSHA", sha, len(k), *k, *a) for k, a in batch]
            return list(await asyncio.gather(*futures, return_exceptions=True))

        return await evalsha_each(self._redis, script, calls, send)

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue and self._idle:
            conn = self._idle.pop()
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            self.batches += 1
            self.commands += len(batch)
            task = asyncio.get_running_loop().create_task(self._run(conn, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(
        self, conn: AbstractConnection, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]
    ) -> None:
        # hiredis packs in C (~2 µs for a commit; redis-py's Python packer ~14 µs). Floats are
        # written in their shortest repr, as redis-py's encoder writes them.
        payload = b"".join([_pack(args) for args, _ in batch])
        done = 0
        try:
            reader = conn._reader
            if reader is not None and reader.at_eof():
                # Closed by the server while idle: nothing of this batch was written to it, so
                # a fresh connection (made by the send) is safe.
                await conn.disconnect(nowait=True)
            done = await self._send_and_read(conn, payload, batch)
        except BaseException as exc:
            # Connection lost or timed out mid-batch: the replies still owed cannot be matched
            # any more. Drop the connection (the next batch reconnects) and fail what is left.
            await conn.disconnect(nowait=True)
            done = getattr(exc, "replies_read", done)
            for _, fut in batch[done:]:
                if not fut.done():
                    fut.set_exception(
                        exc if isinstance(exc, Exception) else RedisConnectionError("cancelled")
                    )
            if not isinstance(exc, Exception):
                raise
        finally:
            if not self._closed:
                self._idle.append(conn)
                if self._queue and not self._scheduled:
                    self._scheduled = True
                    asyncio.get_running_loop().call_soon(self._flush)

    @staticmethod
    async def _send_and_read(
        conn: AbstractConnection,
        payload: bytes,
        batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]],
    ) -> int:
        """Send the batch and resolve its futures in order; returns the replies read. An error
        raised part-way carries `replies_read`, so the caller knows what was answered."""
        done = 0
        try:
            # check_health: after the pool's health-check interval of idleness, a PING (with
            # reconnect) goes first.
            await conn.send_packed_command(payload, check_health=True)
            for _, fut in batch:  # bounded by the batch
                try:
                    reply = await conn.read_response()
                except ResponseError as exc:  # an error reply: the stream stays in sync
                    done += 1
                    if not fut.done():
                        fut.set_exception(exc)
                    continue
                done += 1
                if not fut.done():  # the waiting request may have been cancelled
                    fut.set_result(reply)
        except BaseException as exc:
            exc.replies_read = done  # type: ignore[attr-defined]
            raise
        return done

    async def aclose(self) -> None:
        log.info("autopipeline_closed", batches=self.batches, commands=self.commands)
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(RedisConnectionError("AutoPipeline closed"))
        self._queue.clear()
        for conn in self._all:
            await conn.disconnect()
