"""The shard count of a fleet's Redis, and who owns which shards.

The shard count S is fixed when the fleet's Redis is first initialised: the first service to start
records its TOOLOO_SHARDS (`SET NX`), and every later start compares. A service started with
another S would put learners in other shards than the ones holding their data, so it refuses to
start (non-zero exit) and writes nothing.

Work that is spread over replicas (the coach's ticks, reports' stream consumers) is spread by
shard: a replica works on the shards it owns. `ShardOwnership` is what such a worker asks; the
per-shard leases (shared/shard_leases.py) implement it with fencing tokens, `AllShards` is the
single-owner case (a tool, a test, a service run alone).
"""

from __future__ import annotations

from typing import Protocol

from shared.keys import Keys
from shared.redis_types import FleetRedis


class ShardCountMismatch(RuntimeError):
    """TOOLOO_SHARDS differs from the shard count recorded in the fleet's Redis."""


async def ensure_shard_count(redis: FleetRedis, keys: Keys) -> int:
    """Record S when the Redis has none yet; refuse (ShardCountMismatch, nothing written) when
    it holds another. Returns the recorded S. One `SET NX GET`: two services starting at once
    agree on one value, whichever wrote first."""
    previous = await redis.set(keys.fleet_shards, str(keys.shards), nx=True, get=True)
    if previous is None:
        return keys.shards
    recorded = int(previous)
    if recorded != keys.shards:
        raise ShardCountMismatch(
            f"TOOLOO_SHARDS={keys.shards}, but the fleet's Redis (prefix {keys.prefix!r}) was "
            f"initialised with {recorded} shards; start the fleet with TOOLOO_SHARDS={recorded} "
            "(the shard count cannot change once learners are placed)"
        )
    return recorded


class ShardOwnership(Protocol):
    """The shards this replica works on now, and the fencing token of each (None: unfenced)."""

    def owned(self) -> frozenset[int]: ...

    def token(self, shard: int) -> int | None: ...


class AllShards:
    """Every shard, unfenced: one worker for the whole fleet."""

    def __init__(self, keys: Keys) -> None:
        self._all = frozenset(keys.all_shards())

    def owned(self) -> frozenset[int]:
        return self._all

    def token(self, shard: int) -> int | None:
        return None
