"""The asyncio Redis connection of a service, with bounded retry on start."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from shared.logging import get_logger, redact_text

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


def make_client(url: str, *, max_connections: int = 64) -> Redis:
    client = Redis.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        socket_connect_timeout=2.0,
        # Every command has a timeout; a blocked XREADGROUP passes its own, shorter, BLOCK.
        socket_timeout=10.0,
        health_check_interval=30,
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


async def connect(url: str, *, wait_s: float = 10.0, delay_s: float = 0.25) -> Redis:
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
