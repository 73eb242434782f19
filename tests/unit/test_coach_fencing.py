"""Coach lease fencing against a real redis-server: after a leader stalls past its lease and
another replica acquires it, the stale leader's writes are refused whole (nothing of them
lands); and the move of the coach's keys to the `{coach}` hash tag keeps stored settings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from services.coach.lease import Lease
from services.coach.scheduler import Pick
from services.coach.store import CoachStore, Fenced, MetaServed
from services.coach.tick import TickResult
from shared.keys import Keys
from shared.scripts import Scripts
from tests.snapshot import snapshot


def tick(at_ms: int, learner: str) -> TickResult:
    return TickResult(
        at_ms=at_ms,
        summary={"needing": 1, "promoted": 0, "rounds": 3},
        action="coached 1 learner",
        rounds=3,
        coached=[learner],
        advanced=[Pick(learner, 0.0, False)],
    )


async def expire(redis: Redis, key: str) -> None:
    """The lease lapses (the holder stalled past its TTL): bounded wait for the key to go."""
    await redis.pexpire(key, 1)
    for _ in range(200):
        if not await redis.exists(key):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("lease did not expire")


async def test_a_stalled_leader_is_refused_after_another_acquires(
    redis: Redis, keys: Keys, scripts: Scripts, prefix: str
) -> None:
    lease_a = Lease(redis, keys, scripts, token="a")
    lease_b = Lease(redis, keys, scripts, token="b")
    store_a = CoachStore(redis, keys, fencing=lease_a)
    store_b = CoachStore(redis, keys, fencing=lease_b)
    await redis.zadd(keys.coach_queue, {"x": 0})
    await redis.zadd(keys.coach_ready, {"y": 1})  # a review due at 1 ms

    assert await lease_a.try_acquire() and lease_a.fence_token == 1
    await store_a.record_tick(tick(1000, "x"))  # A leads: its writes land
    assert await redis.hget(keys.coach_stats, "ticks") == "1"

    await expire(redis, keys.coach_lease)  # A stalls ...
    assert await lease_b.try_acquire() and lease_b.fence_token == 2  # ... B takes over

    before = await snapshot(redis, prefix)
    with pytest.raises(Fenced):
        await store_a.record_tick(tick(2000, "x"))
    with pytest.raises(Fenced):
        await store_a.promote_due(5000)
    with pytest.raises(Fenced):
        await store_a.record_meta_served([MetaServed("1-1", "x", 1, 5.0)], "served 1")
    with pytest.raises(Fenced):
        await store_a.record_meta_dropped("1-1", "dropped")
    with pytest.raises(Fenced):
        await store_a.note_action("stale note")
    assert await snapshot(redis, prefix) == before  # nothing of A's was written

    await store_b.record_tick(tick(3000, "x"))  # the new leader's writes land
    assert await store_b.promote_due(5000) == 1
    assert await redis.hget(keys.coach_stats, "ticks") == "2"

    # A tries again: a new acquisition (once B is gone) gives A a newer token than B's.
    await expire(redis, keys.coach_lease)
    assert await lease_a.try_acquire() and lease_a.fence_token == 3
    with pytest.raises(Fenced):
        await store_b.record_tick(tick(4000, "x"))


async def test_a_replica_that_never_acquired_writes_nothing(
    redis: Redis, keys: Keys, scripts: Scripts, prefix: str
) -> None:
    store = CoachStore(redis, keys, fencing=Lease(redis, keys, scripts, token="standby"))
    before = await snapshot(redis, prefix)
    with pytest.raises(Fenced):
        await store.record_tick(tick(1000, "x"))
    assert await snapshot(redis, prefix) == before


async def test_coach_keys_move_to_the_hash_tag_keeping_settings(redis: Redis, keys: Keys) -> None:
    legacy = dict(keys.legacy_coach_keys())
    old_settings = f"{keys.prefix}:coach:settings"
    old_queue = f"{keys.prefix}:coach:queue"
    assert legacy[old_settings] == keys.coach_settings and "{coach}" in keys.coach_settings
    await redis.hset(old_settings, mapping={"maxRoundsPerCycle": "7", "minAvgMastery": "91"})
    await redis.zadd(old_queue, {"a": 1, "b": 2})
    # Training committed before the coach started: the new queue exists already.
    await redis.zadd(keys.coach_queue, {"b": 5, "c": 3})
    await redis.hset(keys.coach_settings, "minAvgMastery", "80")

    store = CoachStore(redis, keys)
    assert await store.migrate_keys() == 2
    assert await redis.exists(old_settings, old_queue) == 0
    assert await redis.hgetall(keys.coach_settings) == {
        "maxRoundsPerCycle": "7",  # kept from the old key
        "minAvgMastery": "80",  # the current key's value wins
    }
    assert await redis.zrange(keys.coach_queue, 0, -1, withscores=True) == [
        ("a", 1.0), ("c", 3.0), ("b", 5.0),
    ]  # fmt: skip
    assert await store.migrate_keys() == 0  # idempotent
    assert (await store.load_settings()).maxRoundsPerCycle == 7


async def test_an_acquisition_between_check_and_write_aborts_the_write(
    redis: Redis, keys: Keys, scripts: Scripts, prefix: str, redis_server: Any
) -> None:
    """The fence is checked, then another replica acquires before EXEC: the WATCH on the fence
    makes EXEC apply nothing (the check and the writes are one atomic step)."""
    lease = Lease(redis, keys, scripts, token="a")
    store = CoachStore(redis, keys, fencing=lease)
    assert await lease.try_acquire()
    other = sync_redis.Redis.from_url(redis_server.url)

    def fill(pipe: Any) -> None:
        pipe.hincrby(keys.coach_stats, "ticks", 1)
        other.incr(keys.coach_fence)  # a new holder acquires right now, on its own connection

    before = await snapshot(redis, prefix)
    with pytest.raises(Fenced):
        await store._fenced(fill)
    after = await snapshot(redis, prefix)
    fence = keys.coach_fence.encode()
    assert {k: v for k, v in after.items() if k != fence} == {
        k: v for k, v in before.items() if k != fence
    }  # only the other replica's acquisition changed anything
    other.close()
