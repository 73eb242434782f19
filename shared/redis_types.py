"""Types at the boundary with redis-py.

Every client of the fleet is made with `decode_responses=True` (`shared/redis_conn.py`), so a
reply holds `str`, never `bytes`; redis-py's annotations cannot know that and say `bytes | str`.
These helpers state it once, where a reply enters typed code, instead of a cast at each use.
They are casts, not conversions: no work on the hot path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster
from redis.typing import EncodableT, FieldT

# The client `shared.redis_conn.connect_fleet` returns: a single Redis, or a Redis Cluster's.
FleetRedis = Redis | RedisCluster

# What redis-py accepts for HSET's mapping / XADD's fields. Mapping's key type is invariant, so a
# `dict[str, str]` is refused where this is asked for; build such dicts with this annotation.
FieldMap = dict[FieldT, EncodableT]


def text(reply: Any) -> str:
    """A string reply (GET, HGET of a field known to exist, an XADD id)."""
    return cast(str, reply)


def text_or_none(reply: Any) -> str | None:
    """A string reply that may be nil."""
    return cast("str | None", reply)


def texts(reply: Any) -> list[str]:
    """A list of strings (ZRANGE without scores, SMEMBERS as a list, KEYS …)."""
    return cast("list[str]", reply)


def scored(reply: Any) -> list[tuple[str, float]]:
    """A sorted-set page read WITHSCORES: (member, score) pairs."""
    return cast("list[tuple[str, float]]", reply)


def text_map(reply: Any) -> dict[str, str]:
    """A hash (HGETALL) or a stream entry's fields."""
    return cast("dict[str, str]", reply)


def field_map(fields: Mapping[str, Any]) -> FieldMap:
    """`fields` typed as redis-py's HSET mapping / XADD fields (the same dict)."""
    return cast(FieldMap, fields)
