"""Every key under a test's prefix with its type, serialized value (DUMP) and whether it has a
TTL: compared before and after an operation that must change nothing."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis


async def snapshot(redis: Redis, prefix: str) -> dict[bytes, tuple[Any, ...]]:
    # DUMP answers binary: a client of its own on the same server, without decoding.
    kw = redis.connection_pool.connection_kwargs
    raw = Redis(host=kw.get("host", "127.0.0.1"), port=kw.get("port", 6379), db=kw.get("db", 0))
    try:
        out: dict[bytes, tuple[Any, ...]] = {}
        async for key in raw.scan_iter(match=f"{prefix}*", count=1000):  # bounded by the keys
            out[key] = (await raw.type(key), await raw.dump(key), await raw.pttl(key) > 0)
        return out
    finally:
        await raw.aclose()
