"""The asyncio Redis connection of a service, with bounded retry on start."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.logging import get_logger, redact_text

log = get_logger(__name__)


RETRIES = 8


def make_client(url: str, *, max_connections: int = 64) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        socket_connect_timeout=2.0,
        # Every command has a timeout; a blocked XREADGROUP passes its own, shorter, BLOCK.
        socket_timeout=10.0,
        health_check_interval=30,
        # Redis.from_url does not pass redis-py's default retry to the pool: without this, every
        # pooled connection left over from before a Redis restart failed its next command
        # ("Connection closed by server"), so requests failed after Redis was already back.
        # Connection errors only (refused, closed, still loading the AOF), retried on a fresh
        # connection for about 2 s in all: long enough to ride out a restart, bounded. Timeouts
        # are not retried (the command may still be running).
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.02, cap=0.4),
            RETRIES,
            supported_errors=(RedisConnectionError,),
        ),
    )


async def connect(url: str, *, attempts: int = 5, delay_s: float = 0.25) -> Redis:
    """Connect and PING, retrying while Redis starts (bounded: about 10 s by default; each
    attempt's PING itself retries a refused connection for about 2 s, see make_client).

    Services start in parallel with the embedded Redis under honcho; a short bounded retry lets
    them come up in any order instead of crashing and being restarted.
    """
    client = make_client(url)
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            await client.ping()
            return client
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            last_error = exc
            if attempt == 1 or attempt % 10 == 0:
                log.warning("redis_unavailable", attempt=attempt, error=redact_text(str(exc)))
            await asyncio.sleep(delay_s)
    await client.aclose()
    # The URL may hold a password (redis://:pw@host): masked, since this message ends up in the
    # start-up traceback on stderr.
    raise RuntimeError(
        redact_text(f"Redis at {url} did not answer after {attempts} attempts: {last_error}")
    )
