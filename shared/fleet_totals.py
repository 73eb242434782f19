"""The fleet's figures that are sums over the shards: learner count, learners per region, rounds
total, learners deactivated by a throttle.

Every shard keeps its own learner index, region counts and round counter (shared/keys.py), so no
write touches a fleet-wide key; a figure of the whole fleet is read as the sum of S small reads,
sent together in one non-transactional pipeline (one round trip on a single Redis; on a Redis
Cluster the client splits it by node). The sum is not a snapshot of one instant: each shard's
figure is exact at the moment it is read, which is what a count of a growing population can be.

Async functions for the services, `*_sync` twins for the harness and load tests (a synchronous
redis-py client); both queue the same commands (`_queue`) and fold the same replies (`_fold`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis as sync_redis

from shared.keys import Keys
from shared.redis_types import FleetRedis


@dataclass(frozen=True, slots=True)
class FleetTotals:
    learners: int = 0
    rounds: int = 0
    regions: dict[str, int] = field(default_factory=dict)  # region -> learners
    inactive: int = 0  # of `learners`, those a throttle deactivated

    @property
    def active(self) -> int:
        return self.learners - self.inactive


def _queue(
    pipe: Any, keys: Keys, *, learners: bool, rounds: bool, regions: bool, inactive: bool = False
) -> None:
    for shard in keys.all_shards():
        if learners:
            pipe.zcard(keys.learners_index(shard))
        if rounds:
            pipe.get(keys.rounds_seq(shard))
        if regions:
            pipe.hgetall(keys.learners_regions(shard))
        if inactive:
            pipe.zcard(keys.learners_inactive(shard))


def _fold(
    replies: Sequence[Any],
    keys: Keys,
    *,
    learners: bool,
    rounds: bool,
    regions: bool,
    inactive: bool = False,
) -> FleetTotals:
    per_shard = int(learners) + int(rounds) + int(regions) + int(inactive)
    n_learners = n_rounds = n_inactive = 0
    by_region: dict[str, int] = {}
    for shard in keys.all_shards():
        at = shard * per_shard
        if learners:
            n_learners += int(replies[at])
            at += 1
        if rounds:
            n_rounds += int(replies[at] or 0)
            at += 1
        if regions:
            for region, count in (replies[at] or {}).items():
                name = region.decode() if isinstance(region, bytes) else str(region)
                by_region[name] = by_region.get(name, 0) + int(count)
            at += 1
        if inactive:
            n_inactive += int(replies[at])
    regions_left = {r: c for r, c in by_region.items() if c > 0}
    return FleetTotals(n_learners, n_rounds, regions_left, n_inactive)


async def read_totals(
    redis: FleetRedis,
    keys: Keys,
    *,
    learners: bool = True,
    rounds: bool = True,
    regions: bool = True,
    inactive: bool = False,
) -> FleetTotals:
    """The sums asked for (the others stay 0 / empty), in one pipelined round trip."""
    what = {"learners": learners, "rounds": rounds, "regions": regions, "inactive": inactive}
    async with redis.pipeline(transaction=False) as pipe:
        _queue(pipe, keys, **what)
        replies = await pipe.execute()
    return _fold(replies, keys, **what)


async def learner_count(redis: FleetRedis, keys: Keys) -> int:
    return (await read_totals(redis, keys, rounds=False, regions=False)).learners


async def population(redis: FleetRedis, keys: Keys) -> FleetTotals:
    """Learners and, of them, the inactive ones (`.active` the rest), in one round trip."""
    return await read_totals(redis, keys, rounds=False, regions=False, inactive=True)


async def rounds_total(redis: FleetRedis, keys: Keys) -> int:
    """Rounds ever committed in the fleet: the sum of the shards' round counters."""
    return (await read_totals(redis, keys, learners=False, regions=False)).rounds


def read_totals_sync(
    redis: sync_redis.Redis,
    keys: Keys,
    *,
    learners: bool = True,
    rounds: bool = True,
    regions: bool = True,
) -> FleetTotals:
    what = {"learners": learners, "rounds": rounds, "regions": regions}
    with redis.pipeline(transaction=False) as pipe:
        _queue(pipe, keys, **what)
        replies = pipe.execute()
    return _fold(replies, keys, **what)


def learner_count_sync(redis: sync_redis.Redis, keys: Keys) -> int:
    return read_totals_sync(redis, keys, rounds=False, regions=False).learners


def rounds_total_sync(redis: sync_redis.Redis, keys: Keys) -> int:
    return read_totals_sync(redis, keys, learners=False, regions=False).rounds


def learner_ids_sync(redis: sync_redis.Redis, keys: Keys) -> list[str]:
    """Every learner id, shard by shard (for tools and tests that check every learner; a whole
    index read, never on a service's path)."""
    with redis.pipeline(transaction=False) as pipe:
        for shard in keys.all_shards():
            pipe.zrange(keys.learners_index(shard), 0, -1)
        replies = pipe.execute()
    return [x.decode() if isinstance(x, bytes) else str(x) for ids in replies for x in ids]
