"""A bounded log of JSON entries in one Redis list, newest first: the coach's boost timings,
reports' alert deliveries, web's controller snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from shared.redis_types import FleetRedis


async def append(redis: FleetRedis, key: str, entry: Mapping[str, Any], cap: int) -> None:
    """LPUSH and LTRIM in one MULTI: the list never holds more than `cap` entries."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(key, orjson.dumps(entry))
        pipe.ltrim(key, 0, cap - 1)
        await pipe.execute()


async def newest(redis: FleetRedis, key: str, limit: int, cap: int) -> list[dict[str, Any]]:
    """The newest `limit` entries (at most `cap`), newest first; an entry that is not JSON is
    skipped rather than failing the whole read."""
    out = []
    for item in await redis.lrange(key, 0, min(limit, cap) - 1):
        try:
            out.append(orjson.loads(item))
        except orjson.JSONDecodeError:
            continue
    return out
