"""Per-shard leases on a real redis-server: replicas split the shards fairly and disjointly, a
replica that stops renewing loses its shards to the others, a stale holder's token is refused,
and a graceful stop hands over at once."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from shared.keys import Keys
from shared.shard_leases import (
    ShardLeases,
    ShardLeaseSettings,
    coach_role,
    fair_share,
    reports_role,
)


def replica(redis: Redis, keys: Keys, name: str, ttl_ms: int = 2000) -> ShardLeases:
    return ShardLeases(redis, keys, coach_role(keys), token=name, ttl_ms=ttl_ms, renew_ms=50)


async def settle(*replicas: ShardLeases, cycles: int = 4) -> None:
    for _ in range(cycles):  # bounded: a few cycles of every replica, in turn
        for r in replicas:
            await r.cycle()


def assert_split(replicas: list[ShardLeases], shards: int) -> None:
    owned = [r.owned() for r in replicas]
    assert sum(len(o) for o in owned) == shards  # every shard owned ...
    assert frozenset().union(*owned) == frozenset(range(shards))  # ... by exactly one replica
    share = fair_share(shards, len(replicas))
    assert all(len(o) <= share for o in owned), [len(o) for o in owned]


def test_fair_share_and_settings_bounds():
    assert [fair_share(16, n) for n in (0, 1, 2, 3, 4, 16, 17)] == [16, 16, 8, 6, 4, 1, 1]
    settings = ShardLeaseSettings()
    assert (settings.ttl_ms, settings.renew_ms) == (2000, 500)
    with pytest.raises(ValidationError, match="at most half"):
        ShardLeaseSettings(TOOLOO_SHARD_LEASE_TTL_MS=1000, TOOLOO_SHARD_LEASE_RENEW_MS=600)


@pytest.mark.parametrize("count", [2, 3])
async def test_replicas_share_the_shards_fairly(redis: Redis, keys: Keys, count: int) -> None:
    first = replica(redis, keys, "r0")
    await first.cycle()
    assert first.owned() == frozenset(range(16))  # alone: every shard
    assert [first.token(s) for s in range(3)] == [1, 1, 1]  # each shard's first acquisition
    assert replica(redis, keys, "never").token(0) == 0  # no fence equals it
    others = [replica(redis, keys, f"r{i}") for i in range(1, count)]
    everyone = [first, *others]
    await settle(*everyone)
    assert_split(everyone, 16)
    # Stable once split: another round of cycles moves nothing.
    before = [r.owned() for r in everyone]
    await settle(*everyone, cycles=2)
    assert [r.owned() for r in everyone] == before


async def test_a_replica_that_stops_renewing_loses_its_shards(redis: Redis, keys: Keys) -> None:
    a, b = replica(redis, keys, "a", ttl_ms=800), replica(redis, keys, "b", ttl_ms=800)
    await settle(a, b)
    assert_split([a, b], 16)
    lost = a.owned()
    stale = {s: a.token(s) for s in lost}
    await asyncio.sleep(0.85)  # a stalls past the ttl: its own view has lapsed first
    assert a.owned() == frozenset()
    await settle(b, cycles=2)
    assert b.owned() == frozenset(range(16))
    for shard in lost:  # a newer tenure for every shard a held: a's tokens are stale
        assert b.token(shard) == int(await redis.get(keys.coach_fence(shard))) > stale[shard]
    # a comes back: its renewals are refused, so it counts none of them as its own, then takes
    # its share anew with newer tokens.
    await a.cycle()
    assert not (a.owned() & lost)
    await settle(a, b)
    assert all(a.token(s) > stale[s] for s in a.owned() & lost)
    assert_split([a, b], 16)


async def test_a_graceful_stop_hands_over_at_once(redis: Redis, keys: Keys) -> None:
    a, b = replica(redis, keys, "a"), replica(redis, keys, "b")
    await settle(a, b)
    await a.stop()
    assert a.owned() == frozenset()
    await settle(b, cycles=1)  # no ttl to wait for: the leases and a's membership are gone
    assert b.members == 1 and b.owned() == frozenset(range(16))


async def test_run_holds_then_releases_on_cancel(redis: Redis, keys: Keys) -> None:
    a = replica(redis, keys, "a", ttl_ms=1000)
    task = asyncio.create_task(a.run())
    await asyncio.sleep(1.5)  # longer than the ttl: renewals keep the shards
    assert a.owned() == frozenset(range(16))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await redis.exists(*(keys.coach_lease(s) for s in range(16))) == 0
    assert await redis.zcard(keys.coach_members) == 0


async def test_more_replicas_than_shards_stand_by(redis: Redis, prefix: str) -> None:
    keys = Keys(prefix, shards=2)
    replicas = [
        ShardLeases(redis, keys, reports_role(keys), token=f"r{i}", renew_ms=50) for i in range(3)
    ]
    await settle(*replicas)
    assert sorted(len(r.owned()) for r in replicas) == [0, 1, 1]
    assert await redis.zcard(keys.reports_members) == 3
