"""Per-client rate limits for expensive calls (boosts, scale, cohort boosts, new topics, learner
creation, orchestrator actions, long reports windows), fleet-wide in Redis.

The limiter is the `limits` library's moving window (`MovingWindowRateLimiter` on its redis-py
asyncio storage, over the service's own connection pool): one EVALSHA per call, the same one
round trip the hand-written fixed window took, but without its 2x burst at a window's edge. The
script checks and records a call atomically (Redis runs it alone), so replicas cannot both take
the last slot. The 429's `Retry-After` costs a second round trip, on refusals only.

Who the client is: the peer address, unless the peer is believed to speak for someone else:
- the fleet's gateway: it forwards the client it saw in `X-Forwarded-For`, with the hop secret
  (`X-Tooloo-Gateway`, a random value the gateway keeps in Redis) that a client cannot know;
- a proxy listed in `TOOLOO_TRUSTED_PROXIES`: its `X-Forwarded-For` is read right to left,
  skipping trusted proxies, and the right-most hop that is not one is the client (the hops to
  its left were written by that client and prove nothing).
Anything else's `X-Forwarded-For` is ignored: rotating it no longer buys a fresh budget.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import secrets
import time
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aiohttp import web
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import RedisCluster
from redis.exceptions import RedisError

from shared.app_keys import KEYS, REDIS, SETTINGS
from shared.errors import TooManyRequests
from shared.keys import Keys
from shared.redis_types import FleetRedis

FORWARDED_FOR = "X-Forwarded-For"
GATEWAY_HOP_HEADER = "X-Tooloo-Gateway"
# More hops than this in one X-Forwarded-For are not read (a bound on the walk).
MAX_HOPS = 16
# How long a process keeps the gateway's hop secret before reading it again.
HOP_SECRET_TTL_S = 60.0
HOP_READ_TIMEOUT_S = 0.5


@dataclass(frozen=True, slots=True)
class RateLimit:
    scope: str
    limit: int  # calls (tokens) allowed in any window of `window_s`
    window_s: int

    @property
    def item(self) -> RateLimitItemPerSecond:
        return RateLimitItemPerSecond(self.limit, self.window_s, namespace="LIMIT")


# ---- who the client is -------------------------------------------------------------------------


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def parse_proxies(listed: str) -> tuple[Network, ...]:
    """`TOOLOO_TRUSTED_PROXIES` (IPs or CIDRs, comma-separated) as networks; a bad entry is a
    start-up error, not a silently ignored proxy."""
    return tuple(
        ipaddress.ip_network(p.strip(), strict=False) for p in listed.split(",") if p.strip()
    )


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def rightmost_untrusted(peer: str, forwarded: str | None, proxies: tuple[Network, ...]) -> str:
    """The client of a request that reached us from `peer` with `forwarded` (X-Forwarded-For):
    walk from the peer leftwards while the hop is a trusted proxy; the first hop that is not is
    the client. A hop that is not an IP address ends the walk at the proxy that wrote it, so
    nothing but addresses ever names a bucket."""
    client = peer
    peer_ip = _ip(peer)
    if not forwarded or peer_ip is None or not any(peer_ip in net for net in proxies):
        return client
    for hop in reversed(forwarded.split(",")[-MAX_HOPS:]):  # bounded
        ip = _ip(hop)
        if ip is None:
            break
        client = str(ip)
        if not any(ip in net for net in proxies):
            break
    return client


class HopSecret:
    """The gateway's hop secret, created once in Redis (SET NX: the first gateway to start picks
    it, every later one reads the same) and cached per process for HOP_SECRET_TTL_S."""

    def __init__(self) -> None:
        self._value: str | None = None
        self._at = 0.0

    async def get(self, redis: FleetRedis, keys: Keys, *, create: bool) -> str | None:
        now = time.monotonic()
        if self._value is None or now - self._at > HOP_SECRET_TTL_S:
            try:
                # Bounded: the gateway forwards reads while Redis is away (the orchestrator's
                # status during a Redis restart); it then goes on with what it knew, or without
                # the hop, and the services count its calls against its own address.
                value = await asyncio.wait_for(self._read(redis, keys, create), HOP_READ_TIMEOUT_S)
            except (RedisError, OSError, TimeoutError):
                return self._value
            self._value, self._at = (str(value) if value else None), now
        return self._value

    @staticmethod
    async def _read(redis: FleetRedis, keys: Keys, create: bool) -> str | None:
        key = keys.gateway_hop_secret
        if create:
            # SET NX: whichever gateway comes first picks the secret; the GET reads the winner's.
            await redis.set(key, secrets.token_urlsafe(32), nx=True)
        value = await redis.get(key)  # str: the fleet's clients decode responses
        return str(value) if value else None


_HOP_SECRETS: dict[str, HopSecret] = {}


def hop_secret(keys: Keys) -> HopSecret:
    return _HOP_SECRETS.setdefault(keys.prefix, HopSecret())


async def client_of(request: web.Request) -> str:
    """The client this request counts against (see the module docstring)."""
    app = request.app
    peer = request.remote or "unknown"
    forwarded = request.headers.get(FORWARDED_FOR)
    given = request.headers.get(GATEWAY_HOP_HEADER)
    if forwarded and given:
        secret = await hop_secret(app[KEYS]).get(app[REDIS], app[KEYS], create=False)
        # Constant-time compare: the secret cannot be guessed byte by byte from timings.
        if secret and hmac.compare_digest(given.encode(), secret.encode()):
            ip = _ip(forwarded.split(",")[-1])
            return str(ip) if ip is not None else peer
    return rightmost_untrusted(peer, forwarded, parse_proxies(app[SETTINGS].trusted_proxies))


async def gateway_hop_headers(request: web.Request) -> dict[str, str]:
    """What the gateway adds to a forwarded call: the client it resolved, and its hop secret."""
    app = request.app
    secret = await hop_secret(app[KEYS]).get(app[REDIS], app[KEYS], create=True)
    headers = {FORWARDED_FOR: await client_of(request)}
    if secret:
        headers[GATEWAY_HOP_HEADER] = secret
    return headers


# ---- counting ----------------------------------------------------------------------------------

# One limiter per Redis client (and key prefix): the storage only wraps the client's pool.
_LIMITERS: weakref.WeakKeyDictionary[FleetRedis, dict[str, MovingWindowRateLimiter]] = (
    weakref.WeakKeyDictionary()
)


# limiter -> its first ping (see _warm); one per limiter, so per Redis client and event loop.
_WARMING: weakref.WeakKeyDictionary[MovingWindowRateLimiter, asyncio.Future[Any]] = (
    weakref.WeakKeyDictionary()
)


async def _warm(limiter: MovingWindowRateLimiter) -> None:
    """The first call through a cluster storage initialises its client (reads the slot map and
    replaces the node connections). redis-py does not serialise that: seen in CI, eight
    concurrent first calls raced and one found its connection torn down under it (an
    AttributeError, a 500). So one ping initialises it and every first caller awaits that same
    ping; a failed ping is tried again by the next call."""
    warming = _WARMING.get(limiter)
    if warming is None:
        warming = _WARMING[limiter] = asyncio.ensure_future(limiter.storage.check())
    try:
        await asyncio.shield(warming)
    except Exception:
        if _WARMING.get(limiter) is warming:
            del _WARMING[limiter]
        raise


def _limiter(redis: FleetRedis, keys: Keys) -> MovingWindowRateLimiter:
    per_prefix = _LIMITERS.setdefault(redis, {})
    limiter = per_prefix.get(keys.prefix)
    if limiter is None:
        storage: RedisStorage
        if isinstance(redis, RedisCluster):
            # A cluster client has no pool to share: `limits` makes its own RedisCluster from a
            # node's address and the fleet's user (each window is one key, so one slot).
            node, kw = redis.get_default_node(), redis.connection_kwargs
            auth: dict[str, Any] = {"username": kw.get("username"), "password": kw.get("password")}
            storage = RedisClusterStorage(
                f"async+redis+cluster://{node.host}:{node.port}",
                implementation="redispy",
                key_prefix=keys.rate_limit_prefix,
                socket_connect_timeout=2.0,
                socket_timeout=10.0,
                **{k: v for k, v in auth.items() if v},
            )
        else:
            # The service's own pool (its timeouts, retry and password); the URI is then unused.
            # `limits` types its pass-through options as scalars, hence the Any.
            pool: dict[str, Any] = {"connection_pool": redis.connection_pool}
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=keys.rate_limit_prefix,
                **pool,
            )
        limiter = per_prefix[keys.prefix] = MovingWindowRateLimiter(storage)
    return limiter


async def enforce(
    redis: FleetRedis, keys: Keys, rule: RateLimit, client: str, cost: int = 1
) -> None:
    """Count `cost` tokens of `client` against `rule`; raise 429 with Retry-After beyond it."""
    limiter = _limiter(redis, keys)
    if isinstance(redis, RedisCluster):
        await _warm(limiter)
    if await limiter.hit(rule.item, rule.scope, client, cost=min(cost, rule.limit)):
        return
    stats = await limiter.get_window_stats(rule.item, rule.scope, client)
    retry_after = max(1, min(rule.window_s, math.ceil(stats.reset_time - time.time())))
    raise TooManyRequests(
        f"Too many {rule.scope} calls: at most {rule.limit} per {rule.window_s}s"
        + (f" (this one costs {cost})" if cost > 1 else ""),
        details={
            "limit": rule.limit,
            "window_s": rule.window_s,
            "cost": cost,
            "retry_after_s": retry_after,
        },
        headers={"Retry-After": str(retry_after)},
    )


@lru_cache(maxsize=8)
def parse_overrides(listed: str) -> dict[str, tuple[int, int]]:
    """`TOOLOO_RATE_LIMITS` (`scope=calls/seconds`, comma-separated; its pattern is checked when
    the settings load) as {scope: (calls, seconds)}."""
    overrides: dict[str, tuple[int, int]] = {}
    for part in listed.split(","):
        if part.strip():
            scope, _, rate = part.strip().partition("=")
            calls, _, seconds = rate.partition("/")
            overrides[scope.strip()] = (int(calls), int(seconds))
    return overrides


def effective(rule: RateLimit, overrides: str) -> RateLimit:
    """`rule` as the operator set it in `TOOLOO_RATE_LIMITS`, or as the code sets it."""
    if not overrides:
        return rule
    override = parse_overrides(overrides).get(rule.scope)
    return rule if override is None else RateLimit(rule.scope, *override)


async def limit(request: web.Request, rule: RateLimit, cost: int = 1) -> None:
    """`enforce` for the client of `request`, on the app's own Redis, at the operator's rate
    for this scope if one is set."""
    app = request.app
    rule = effective(rule, app[SETTINGS].rate_limits)
    await enforce(app[REDIS], app[KEYS], rule, await client_of(request), cost)
