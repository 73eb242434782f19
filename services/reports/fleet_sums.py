"""Fleet-wide figures reports shows, as sums over the shards: learners, regions, the round
counters, and what the coach has queued. One pipelined round trip each (S is small, every
command reads one key of one shard, so it runs unchanged on a Redis Cluster); no fleet-wide key
is kept for them, because keeping one would put a fleet-wide write on every round and every
learner creation."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from shared.keys import Keys
from shared.redis_types import text_map


def _int(value: object) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True, slots=True)
class Population:
    learners: int
    region_counts: dict[str, int]  # region -> learners in it, over every shard


async def population(redis: Redis, keys: Keys) -> Population:
    """Learners (the shards' index sizes) and learners per region (the shards' region counts)."""
    async with redis.pipeline(transaction=False) as pipe:
        for shard in keys.all_shards():
            pipe.zcard(keys.learners_index(shard))
            pipe.hgetall(keys.learners_regions(shard))
        replies = await pipe.execute()
    learners = 0
    regions: dict[str, int] = {}
    for i in range(0, len(replies), 2):
        learners += _int(replies[i])
        for region, count in text_map(replies[i + 1]).items():
            regions[region] = regions.get(region, 0) + _int(count)
    return Population(learners, {r: n for r, n in sorted(regions.items()) if n > 0})


async def rounds_committed(redis: Redis, keys: Keys) -> int:
    """The fleet's rounds total: the sum of the shards' round counters."""
    values = await _per_shard_gets(redis, [keys.rounds_seq(s) for s in keys.all_shards()])
    return sum(_int(v) for v in values if v is not None)


async def _per_shard_gets(redis: Redis, names: list[str]) -> list[object]:
    # One GET per key (not MGET): the keys are in different slots.
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(name)
        return list(await pipe.execute())
