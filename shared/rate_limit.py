"""Per-client rate limits for expensive operator calls (boost, hyper-boost, scale).

A fixed window counter in Redis (INCR + PEXPIRE in one MULTI/EXEC, so the counter and its expiry
are set together) makes the limit fleet-wide: every replica of a service counts against the same
window. The client is the peer address, or the first X-Forwarded-For hop when the peer is the
fleet's own gateway on loopback.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis

from shared.errors import TooManyRequests
from shared.keys import Keys


@dataclass(frozen=True, slots=True)
class RateLimit:
    scope: str
    limit: int  # calls allowed per window
    window_s: float


def client_id(request: web.Request) -> str:
    peer = request.remote or "unknown"
    forwarded = request.headers.get("X-Forwarded-For")
    # Trust the header only from loopback (our gateway); anyone else could forge it.
    if forwarded and peer in ("127.0.0.1", "::1"):
        return forwarded.split(",")[0].strip()[:64] or peer
    return peer


async def enforce(redis: Redis, keys: Keys, rule: RateLimit, client: str) -> None:
    """Count one call of `client` against `rule`; raise 429 with Retry-After beyond the limit."""
    now = time.time()
    window = int(now // rule.window_s)
    key = keys.rate_limit(rule.scope, client, window)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.pexpire(key, int(rule.window_s * 1000) + 1000)
        count, _ = await pipe.execute()
    if int(count) > rule.limit:
        retry_after = max(1, math.ceil((window + 1) * rule.window_s - now))
        raise TooManyRequests(
            f"Too many {rule.scope} calls: at most {rule.limit} per {rule.window_s:g}s",
            details={"limit": rule.limit, "window_s": rule.window_s, "retry_after_s": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
