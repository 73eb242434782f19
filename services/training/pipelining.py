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

Redis Cluster. redis-py's RedisCluster has no connection pool to take connections from: here each
node gets its own lane (its connections and its queue), and a command goes to the lane of the
master that serves its first key's slot. A command answered MOVED (the slot lives elsewhere now),
ASK (the slot is being migrated and this key already left) or TRYAGAIN (a multi-key command during
that migration) did NOT run: only those are sent again — after MOVED with the slot map updated, to
its new node; after ASK to the importing node, preceded by ASKING on the same connection; after
TRYAGAIN a moment later — at most MAX_REDIRECTS times. A node that refuses connections (failed
over) is the same case, nothing was written: the topology is read again and the batch re-routed.

Durability (`wait_replicas` > 0). Redis replicates asynchronously: a master killed right after a
commit can lose it, with the client already told it was done. A batch carrying commands queued
with `wait=True` ends with `WAIT <replicas> <timeout>` on the same connection: WAIT counts the
replicas that have this connection's last write, so one WAIT covers every write of the batch
(and cannot run inside a script; a WAIT sent through redis-py's cluster client would go to some
node, on some connection, and prove nothing). When fewer replicas answered in time, each such
command fails with NotReplicated: it may be applied on the master, but is not acknowledged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.asyncio import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, MovedError, NoScriptError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.domain_errors import NotReplicated
from shared.logging import get_logger
from shared.redis_conn import ConnectFailed
from shared.redis_types import FleetRedis
from shared.scripts import ScriptCall, evalsha_each

log = get_logger(__name__)


_pack = hiredis.pack_command
_ASKING = _pack(("ASKING",))
# Redirections (MOVED, ASK, TRYAGAIN, a node refusing connections) one command may follow: a slot
# migration needs two (ASK, then MOVED once it is done); more means the map keeps changing.
MAX_REDIRECTS = 5
TRYAGAIN_DELAY_S = 0.05
_SCRIPT_COMMANDS = {"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"}


@dataclass(slots=True)
class _Command:
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    wait: bool  # acknowledged only once `wait_replicas` replicas have it
    ask: str | None = None  # the node an ASK redirected it to: ASKING goes first
    redirects: int = 0


@dataclass(eq=False)
class _Lane:
    """One node's connections (each runs one batch at a time) and the commands queued for it."""

    name: str
    idle: list[AbstractConnection]
    queue: list[_Command] = field(default_factory=list)
    scheduled: bool = False

    def __post_init__(self) -> None:
        self.all = list(self.idle)


def first_key(args: tuple[Any, ...]) -> Any:
    """The key a command is routed by: a script's first KEYS entry, else the first argument
    (every command the training service pipelines names its key first); None if keyless."""
    name = str(args[0]).upper()
    if name in _SCRIPT_COMMANDS:
        return args[3] if len(args) > 3 and int(args[2]) > 0 else None
    return args[1] if len(args) > 1 else None


class AutoPipeline:
    """`await pipe.execute("HMGET", key, "v", "s")` — batched with every other command queued in
    the same event-loop turn (for the same node, on a cluster)."""

    def __init__(
        self,
        redis: FleetRedis,
        *,
        connections: int = 2,
        max_batch: int = 512,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        self._redis = redis
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._connections = connections
        self._max_batch = max_batch
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._lanes: dict[str, _Lane] = {}
        if not isinstance(redis, RedisCluster):
            # Connections of the same pool settings (URL, auth, db, timeouts, decode_responses),
            # but owned here, not checked out per batch: a batch is send + read, nothing else.
            self._single = _Lane(
                "",
                [
                    # redis-py leaves make_connection unannotated (it returns a Connection).
                    redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
                    for _ in range(connections)
                ],
            )
            self._lanes[""] = self._single
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.batches = 0  # batches sent and commands carried: their ratio is the batching factor
        self.commands = 0
        self.redirects = 0  # commands sent again after MOVED/ASK/TRYAGAIN or a failed connect

    async def configure_wait(self, replicas: int | None, timeout_ms: int) -> int:
        """Set how many replicas must have a `wait=True` command before it is acknowledged;
        None: 1 on a cluster whose every master has a replica connected, else 0. Returns it."""
        if replicas is None:
            replicas = 0
            if self._cluster is not None:
                infos = await self._cluster.info("replication", target_nodes=RedisCluster.PRIMARIES)
                counts = [int(info.get("connected_slaves", 0)) for info in infos.values()]
                replicas = 1 if counts and min(counts) >= 1 else 0
        self.wait_replicas = replicas
        self.wait_timeout_ms = timeout_ms
        log.info("commit_wait", replicas=replicas, timeout_ms=timeout_ms)
        return replicas

    # ---- queueing --------------------------------------------------------------------------------
    def execute(self, *args: Any, wait: bool = False) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply (a ResponseError reply is raised). With
        `wait`, and `wait_replicas` set, the reply is given only once that many replicas have
        the batch's writes (else NotReplicated)."""
        if self._closed:
            raise RuntimeError("AutoPipeline is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(_Command(args, fut, wait and self.wait_replicas > 0))
        return fut

    def _enqueue(self, cmd: _Command) -> None:
        try:
            lane = self._lane_of(cmd)
        except Exception as exc:  # no node serves the slot (the map is being read again)
            cmd.future.set_exception(exc)
            return
        lane.queue.append(cmd)
        self._schedule(lane)

    def _schedule(self, lane: _Lane) -> None:
        if not lane.scheduled and lane.idle and lane.queue:
            # call_soon, not now: the other requests handled in this loop turn add theirs first.
            lane.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, lane)

    def _lane_of(self, cmd: _Command) -> _Lane:
        cluster = self._cluster
        if cluster is None:
            return self._single
        if cmd.ask is not None:
            host, _, port = cmd.ask.rpartition(":")
            node = cluster.get_node(host=host, port=int(port))
            if node is None:
                raise RedisConnectionError(f"ASK to {cmd.ask}, a node the cluster map lacks")
        else:
            key = first_key(cmd.args)
            if key is None:
                node = cluster.get_default_node()
            else:
                node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))
        lane = self._lanes.get(node.name)
        if lane is None:
            kwargs = dict(node.connection_kwargs)
            kwargs["retry"] = Retry(NoBackoff(), 0)  # a command is never resent by the connection
            conns = [node.connection_class(**kwargs) for _ in range(self._connections)]
            lane = self._lanes[node.name] = _Lane(node.name, list(conns))
        return lane

    async def evalsha(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a registered script (redis-py AsyncScript) by SHA, loading it on NOSCRIPT (after a
        Redis restart or SCRIPT FLUSH) and retrying once: a NOSCRIPT reply means it did not run.
        Scripts write: with `wait_replicas`, the reply waits for the replicas (see execute)."""
        cmd = (len(keys), *keys, *args)
        if script.sha:
            try:
                return await self.execute("EVALSHA", script.sha, *cmd, wait=True)
            except NoScriptError:
                pass
        script.sha = await self._redis.script_load(script.script)
        return await self.execute("EVALSHA", script.sha, *cmd, wait=True)

    async def evalsha_many(self, script: Any, calls: list[ScriptCall]) -> list[Any]:
        """Run a script once per (keys, args), all queued in this loop turn (so they travel in
        one batch per node); see shared.scripts.evalsha_each for NOSCRIPT and errors."""

        async def send(sha: str, batch: list[ScriptCall]) -> list[Any]:
            futures = [self.execute("EVALSHA", sha, len(k), *k, *a, wait=True) for k, a in batch]
            return list(await asyncio.gather(*futures, return_exceptions=True))

        # A cluster client's script_load loads on every master.
        return await evalsha_each(self._redis, script, calls, send)

    # ---- sending ---------------------------------------------------------------------------------
    def _flush(self, lane: _Lane) -> None:
        lane.scheduled = False
        while lane.queue and lane.idle:
            conn = lane.idle.pop()
            batch = lane.queue[: self._max_batch]
            del lane.queue[: self._max_batch]
            self.batches += 1
            self.commands += len(batch)
            task = asyncio.get_running_loop().create_task(self._run(lane, conn, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, lane: _Lane, conn: AbstractConnection, batch: list[_Command]) -> None:
        # hiredis packs in C (~2 µs for a commit; redis-py's Python packer ~14 µs). Floats are
        # written in their shortest repr, as redis-py's encoder writes them.
        parts: list[bytes] = []
        for cmd in batch:
            if cmd.ask is not None:
                parts.append(_ASKING)
            parts.append(_pack(cmd.args))
        waits = self.wait_replicas if any(cmd.wait for cmd in batch) else 0
        if waits:
            wait_cmd: tuple[Any, ...] = ("WAIT", waits, self.wait_timeout_ms)
            parts.append(_pack(wait_cmd))
        redirected: list[tuple[_Command, Exception]] = []
        try:
            reader = conn._reader
            if reader is not None and reader.at_eof():
                # Closed by the server while idle: nothing of this batch was written to it, so
                # a fresh connection (made by the send) is safe.
                await conn.disconnect(nowait=True)
            await self._send_and_read(conn, b"".join(parts), batch, waits, redirected)
        except ConnectFailed as exc:
            # No connection could be made: nothing was written. On a cluster the node may have
            # failed over: read the map again and send the batch where it now belongs.
            await conn.disconnect(nowait=True)
            if self._cluster is None:
                _fail(batch, exc)
            else:
                redirected.extend((cmd, exc) for cmd in batch if not cmd.future.done())
        except BaseException as exc:
            # Connection lost or timed out mid-batch: the replies still owed cannot be matched
            # any more. Drop the connection (the next batch reconnects) and fail what is left.
            await conn.disconnect(nowait=True)
            _fail(batch, exc if isinstance(exc, Exception) else RedisConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise
        finally:
            if not self._closed:
                lane.idle.append(conn)
                self._schedule(lane)
        if redirected:
            await self._redirect(redirected)

    async def _send_and_read(
        self,
        conn: AbstractConnection,
        payload: bytes,
        batch: list[_Command],
        waits: int,
        redirected: list[tuple[_Command, Exception]],
    ) -> None:
        """Send the batch and resolve its futures in order. A `wait` command's reply is held
        until the WAIT's; a redirected command's goes to `redirected`, to be sent again."""
        # check_health: after the pool's health-check interval of idleness, a PING (with
        # reconnect) goes first.
        await conn.send_packed_command(payload, check_health=True)
        held: list[tuple[_Command, Any]] = []
        for cmd in batch:  # bounded by the batch
            if cmd.ask is not None:
                try:
                    await conn.read_response()  # ASKING's +OK
                except ResponseError:
                    pass  # then the command itself is answered MOVED
            try:
                reply = await conn.read_response()
            except (MovedError, AskError, TryAgainError) as exc:
                redirected.append((cmd, exc))  # refused: it did not run
                continue
            except ResponseError as exc:  # an error reply: the stream stays in sync
                if not cmd.future.done():
                    cmd.future.set_exception(exc)
                continue
            if cmd.wait:
                held.append((cmd, reply))
            elif not cmd.future.done():  # the waiting request may have been cancelled
                cmd.future.set_result(reply)
        if not waits:
            return
        try:
            acked = int(await conn.read_response())
        except ResponseError:
            acked = 0  # WAIT refused (e.g. sent to a replica): nothing is confirmed
        for cmd, reply in held:
            if cmd.future.done():
                continue
            if acked >= waits:
                cmd.future.set_result(reply)
            else:
                cmd.future.set_exception(NotReplicated(acked, waits, self.wait_timeout_ms, reply))

    async def _redirect(self, redirected: list[tuple[_Command, Exception]]) -> None:
        """Queue again the commands that did not run, where they now belong (module docstring)."""
        try:
            await self._redirect_all(redirected)
        except BaseException as exc:  # cancelled by aclose, or the map could not be read
            _fail(
                [cmd for cmd, _ in redirected],
                exc if isinstance(exc, Exception) else RedisConnectionError("AutoPipeline closed"),
            )
            if not isinstance(exc, Exception):
                raise

    async def _redirect_all(self, redirected: list[tuple[_Command, Exception]]) -> None:
        cluster = self._cluster
        refresh = False
        for cmd, exc in redirected:
            if cmd.future.done():
                continue
            cmd.redirects += 1
            if cluster is None or cmd.redirects > MAX_REDIRECTS:
                cmd.future.set_exception(exc)
                continue
            self.redirects += 1
            if isinstance(exc, AskError):
                cmd.ask = f"{exc.host}:{exc.port}"
            else:
                cmd.ask = None
                if isinstance(exc, MovedError):
                    await cluster.nodes_manager.move_slot(exc)
                elif isinstance(exc, ConnectFailed):
                    refresh = True
        if refresh and cluster is not None:
            # The whole map: which replica took over the failed master's slots.
            cluster._initialize = True
            await cluster.initialize()
        pending = [cmd for cmd, exc in redirected if not cmd.future.done()]
        if any(isinstance(exc, (TryAgainError, ConnectFailed)) for _, exc in redirected):
            await asyncio.sleep(TRYAGAIN_DELAY_S)  # the migration or failover moves on meanwhile
        if self._closed:
            raise RedisConnectionError("AutoPipeline closed")
        for cmd in pending:
            self._enqueue(cmd)

    async def aclose(self) -> None:
        log.info(
            "autopipeline_closed",
            batches=self.batches,
            commands=self.commands,
            redirects=self.redirects,
        )
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for lane in self._lanes.values():
            _fail(lane.queue, RedisConnectionError("AutoPipeline closed"))
            lane.queue.clear()
            for conn in lane.all:
                await conn.disconnect()


def _fail(batch: list[_Command], exc: Exception) -> None:
    for cmd in batch:
        if not cmd.future.done():
            cmd.future.set_exception(exc)
