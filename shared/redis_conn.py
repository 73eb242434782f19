"""The asyncio Redis connection of a service, with bounded retry on start.

`connect(url)` finds out what the URL points at: a single Redis gets redis-py's `Redis`; a node of
a Redis Cluster (`INFO cluster` says `cluster_enabled:1`) gets redis-py's asyncio `RedisCluster`,
built from the same URL with the same settings (decoded replies, timeouts, and no resend of a
command that may have run), once every one of the 16384 slots is served."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ClusterDownError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from shared.logging import get_logger, redact_text
from shared.redis_types import FleetRedis

log = get_logger(__name__)


RETRIES = 8


def connect_retry() -> Retry:
    """Connection errors only (refused, reset during the handshake, still loading the AOF),
    retried on a fresh connection for about 2 s in all: long enough to ride out a restart,
    bounded. Timeouts are not retried."""
    return Retry(
        ExponentialWithJitterBackoff(base=0.02, cap=0.4),
        RETRIES,
        supported_errors=(RedisConnectionError,),
    )


class _ConnectRetryMixin:
    """Retry where a command is known not to have run, and nowhere else.

    redis-py runs a command and a pipeline under the connection's `retry`, so a connection lost
    after the command was sent (Redis ran it, the reply was lost) re-sent it: an INCR, HINCRBY,
    XADD or MULTI/EXEC pipeline ran twice (security review 3.2). Here `retry` (the command path)
    never retries; establishing the connection (connect and the AUTH/HELLO handshake) and the
    idle-connection health PING, which change nothing, retry with `connect_retry`. A pooled
    connection that Redis closed while idle (a Redis restart) is not sent a command at all: the
    pool sees it readable (EOF) when it is taken and reconnects it first
    (ConnectionPool.ensure_connection), so requests still ride out a Redis restart."""

    _connect_retry: Retry

    def _init_connect_retry(self) -> None:
        self._connect_retry = connect_retry()

    async def connect(self) -> None:
        conn: Any = self
        await self._connect_retry.call_with_retry(
            lambda: conn.connect_check_health(check_health=True, retry_socket_connect=False),
            lambda error: conn.disconnect(error=error),
        )

    async def check_health(self) -> None:
        conn: Any = self
        loop_time = asyncio.get_running_loop().time()
        if conn.health_check_interval and loop_time > conn.next_health_check:
            await self._connect_retry.call_with_retry(conn._send_ping, conn._ping_failed)


class _TcpConnection(_ConnectRetryMixin, Connection):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_connect_retry()


class _SslConnection(_ConnectRetryMixin, SSLConnection):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_connect_retry()


class _UnixConnection(_ConnectRetryMixin, UnixDomainSocketConnection):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_connect_retry()


def _connection_class(url: str) -> type[AbstractConnection]:
    scheme = urlsplit(url).scheme
    if scheme == "rediss":
        return _SslConnection
    if scheme == "unix":
        return _UnixConnection
    return _TcpConnection


# What every client of the fleet is made with, single Redis or cluster.
CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 2.0,
    # Every command has a timeout; a blocked XREADGROUP passes its own, shorter, BLOCK.
    "socket_timeout": 10.0,
    "health_check_interval": 30,
}


def make_client(url: str, *, max_connections: int = 64) -> Redis:
    client = Redis.from_url(
        url,
        max_connections=max_connections,
        **CLIENT_OPTIONS,
        # No retry once a command was sent (it may have run); connecting retries (see
        # _ConnectRetryMixin). A caller whose command failed gets the error and decides.
        retry=Retry(NoBackoff(), 0),
        # Off, not redis-py's "auto": the pool skips its check for a connection the server
        # closed while it idled when this is anything truthy ("auto" is), and that check is what
        # keeps a stale connection from being sent a command after a Redis restart.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    # Set on the pool, not passed to from_url: the URL's scheme would override that argument.
    client.connection_pool.connection_class = _connection_class(url)
    return client


# ---- Redis Cluster ---------------------------------------------------------------------------
SLOTS = 16384
# Times the cluster client tries a command again after an error that proves it did not run (see
# FleetRedisCluster); each failed connect has already retried for about 2 s (connect_retry), so
# this rides out a failover (a few seconds with a 1-2 s cluster-node-timeout).
CLUSTER_RETRIES = 3
CLUSTER_RETRY_PAUSE_S = 0.25


class ConnectFailed(RedisConnectionError):
    """No connection to the node could be made (refused, handshake failed, timed out): nothing of
    the command was sent, so sending it again (elsewhere, after a topology refresh) is safe."""


class _ClusterConnectionMixin:
    """A cluster node's connection. redis-py's ClusterNode hands out its connections without the
    pool's checks and connects inside `send_packed_command`, past `_ConnectRetryMixin.connect`;
    here, before anything is written: a connection the server closed while it idled (a node
    restarted) is dropped, and the connect (with its retry) runs first, a failure becoming
    ConnectFailed. So the one error the cluster client retries is one where nothing was sent."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        conn: Any = self
        reader = conn._reader
        if conn.is_connected and reader is not None and reader.at_eof():
            await conn.disconnect(nowait=True)
        if not conn.is_connected:
            try:
                await conn.connect()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                raise ConnectFailed(str(exc)) from exc
        await super().send_packed_command(command, check_health)  # type: ignore[misc]


class _ClusterTcpConnection(_ClusterConnectionMixin, _TcpConnection):
    pass


class _ClusterSslConnection(_ClusterConnectionMixin, _SslConnection):
    pass


class FleetRedisCluster(RedisCluster):
    """redis-py's asyncio RedisCluster, retrying only what cannot have run.

    redis-py retries a cluster command, and a whole cluster pipeline or transaction, after any
    ConnectionError or TimeoutError, which may come after the command was sent and run (the
    reply lost): an INCR or a commit would run twice. So the client is made with no retry at
    all (its pipelines and transactions then never resend), and a single command is tried again
    here only after ConnectFailed (nothing sent), CLUSTERDOWN or an uncovered slot (refused
    before running), with the slot map read again: that rides out a failover. MOVED, ASK and
    TRYAGAIN (refused, not run) are followed by redis-py itself. Any other error reaches the
    caller, who decides (a 503; a retry with the same Idempotency-Key replays)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(CLUSTER_RETRIES + 1):  # bounded
            try:
                return await super().execute_command(*args, **kwargs)
            except (ConnectFailed, ClusterDownError, SlotNotCoveredError) as exc:
                if attempt == CLUSTER_RETRIES:
                    raise
                log.warning("redis_cluster_retry", attempt=attempt + 1, error=str(exc)[:200])
                self._initialize = True  # read the slot map again before the next try
                await asyncio.sleep(CLUSTER_RETRY_PAUSE_S * (attempt + 1))
        raise AssertionError("unreachable")


def make_cluster_client(url: str, *, max_connections: int = 64) -> FleetRedisCluster:
    """A cluster client from the URL of any node (its user and password reach every node)."""
    client: FleetRedisCluster = FleetRedisCluster.from_url(  # type: ignore[assignment]
        url,
        max_connections=max_connections,
        # None in redis-py (see FleetRedisCluster): its pipelines read this count too.
        retry=Retry(NoBackoff(), 0),
        require_full_coverage=True,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        **CLIENT_OPTIONS,
    )
    # RedisCluster hard-codes its connection class; the nodes it finds later are made from
    # connection_kwargs (the dict shared with its NodesManager), the startup node already exists.
    cls = _ClusterSslConnection if urlsplit(url).scheme == "rediss" else _ClusterTcpConnection
    client.connection_kwargs["connection_class"] = cls
    for node in client.startup_nodes:
        node.connection_class = cls
    return client


def missing_slot_ranges(slots_reply: Any) -> list[tuple[int, int]]:
    """The slot ranges no master serves, from CLUSTER SLOTS (`[[first, last, master, ...], ...]`
    or redis-py's parsed `{(first, last): {...}}`)."""
    if isinstance(slots_reply, dict):
        spans = [(int(a), int(b)) for a, b in slots_reply]
    else:
        spans = [(int(entry[0]), int(entry[1])) for entry in slots_reply]
    missing: list[tuple[int, int]] = []
    nxt = 0
    for first, last in sorted(spans):
        if first > nxt:
            missing.append((nxt, first - 1))
        nxt = max(nxt, last + 1)
    if nxt < SLOTS:
        missing.append((nxt, SLOTS - 1))
    return missing


def _ranges_text(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


async def _cluster_ready(client: Redis, url: str) -> bool:
    """True when the node says cluster_state:ok; a RuntimeError when slots are served by no
    master (that does not heal by itself: an operator must assign them); False otherwise (a
    failover in progress)."""
    missing = missing_slot_ranges(await client.cluster("SLOTS"))
    if missing:
        raise RuntimeError(
            redact_text(
                f"the Redis Cluster at {url} does not serve every slot: no master has slots "
                f"{_ranges_text(missing)}; assign them (CLUSTER ADDSLOTSRANGE) before starting "
                "the fleet"
            )
        )
    info = await client.cluster("INFO")
    return bool(info.get("cluster_state") == "ok")


async def connect_fleet(url: str, *, wait_s: float = 10.0, delay_s: float = 0.25) -> FleetRedis:
    """Connect and PING, then `INFO cluster`: a cluster node gets a cluster client, once the
    cluster serves every slot (within `wait_s`; slots no master serves are a RuntimeError
    naming them, so the service exits non-zero having written nothing). See `_connect`."""
    client = await _connect(url, wait_s=wait_s, delay_s=delay_s)
    try:
        info = await client.info("cluster")
        if int(info.get("cluster_enabled", 0)) != 1:
            return client
        deadline = time.monotonic() + wait_s
        while not await _cluster_ready(client, url):  # bounded by the deadline
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    redact_text(f"the Redis Cluster at {url} is not ok after {wait_s:g} s")
                )
            await asyncio.sleep(delay_s)
    except BaseException:
        await client.aclose()
        raise
    await client.aclose()
    cluster = make_cluster_client(url)
    try:
        await cluster.initialize()
    except BaseException:
        await cluster.aclose()
        raise
    log.info("redis_cluster", nodes=len(cluster.get_nodes()), masters=len(cluster.get_primaries()))
    return cluster


async def _connect(url: str, *, wait_s: float = 10.0, delay_s: float = 0.25) -> Redis:
    """Connect and PING, retrying until Redis answers or `wait_s` has passed (each PING itself
    retries a refused connection for about 2 s, see make_client); between attempts the pause
    doubles from `delay_s` up to 2 s.

    Services start in parallel with the embedded Redis under honcho, and a Redis may be down when
    a service (re)starts under compose: waiting lets them come up in any order, and in a Redis
    outage, instead of exiting and being restarted in a loop.
    """
    client = make_client(url)
    last_error: Exception | None = None
    deadline = time.monotonic() + wait_s
    attempt = 0
    while True:  # bounded by the deadline
        attempt += 1
        try:
            await client.ping()
            return client
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            last_error = exc
            if attempt == 1 or attempt % 10 == 0:
                log.warning("redis_unavailable", attempt=attempt, error=redact_text(str(exc)))
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(delay_s * 2 ** min(attempt - 1, 4), 2.0))
    await client.aclose()
    # The URL may hold a password (redis://:pw@host): masked, since this message ends up in the
    # start-up traceback on stderr.
    raise RuntimeError(
        redact_text(f"Redis at {url} did not answer within {wait_s:g} s: {last_error}")
    )
