"""Coach replicas over per-shard leases, whole ticks against a real redis-server with a fake
training: two replicas coach disjoint shards and send their tokens; a replica that stalled past
its leases is refused, shard by shard, for the shards another replica took (nothing of its
records lands there); learners training answers `fenced` are neither counted nor advanced."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from services.coach.loop import CoachLoop
from services.coach.scheduler import Pick
from services.coach.settings_store import CoachSettings, merge
from services.coach.store import CoachStore
from services.coach.tick import TickResult
from services.coach.training_api import BatchOutcome, outcome_of
from shared.keys import Keys
from shared.shard_leases import ShardLeases, coach_role
from shared.shards import AllShards
from tests.snapshot import snapshot
from tests.unit.test_coach_loop import FakeTraining, create, rounds_answer

WIDE = merge(CoachSettings(), {"fastLane": {"batchSize": 25}})  # 100 learners per tick


def replica(redis: Redis, keys: Keys, name: str, ttl_ms: int = 2000) -> ShardLeases:
    return ShardLeases(redis, keys, coach_role(keys), token=name, ttl_ms=ttl_ms, renew_ms=50)


async def settle(*replicas: ShardLeases) -> None:
    for _ in range(4):  # bounded: a few cycles of every replica, in turn
        for r in replicas:
            await r.cycle()


def tick_result(at_ms: int, learners: list[str], keys: Keys) -> TickResult:
    return TickResult(
        at_ms=at_ms,
        summary={"needing": len(learners), "promoted": 0, "rounds": len(learners)},
        action="coached",
        rounds=len(learners),
        coached=sorted(learners),
        advanced=[Pick(x, 0.0, False, keys.shard_of(x)) for x in learners],
    )


async def shard_keys(redis: Redis, prefix: str) -> dict[bytes, tuple[object, ...]]:
    """The snapshot of the shards' keys only (not the fleet-wide `{coach}` counters/notes)."""
    return {k: v for k, v in (await snapshot(redis, prefix)).items() if b":{s:" in k}


async def test_two_replicas_coach_disjoint_shards_with_their_tokens(redis, scripts, keys):
    learners = [f"d{i}" for i in range(40)]
    for learner in learners:
        await create(scripts, keys, learner)
    a, b = replica(redis, keys, "a"), replica(redis, keys, "b")
    await settle(a, b)
    assert a.owned() and b.owned() and not a.owned() & b.owned()
    seen: dict[str, set[str]] = {}
    for name, leases in (("a", a), ("b", b)):
        training = FakeTraining()
        loop = CoachLoop(CoachStore(redis, keys, leases), training, leases)
        summary = await loop.tick(WIDE)
        seen[name] = {x for call, _ in training.calls for x in call}
        assert {keys.shard_of(x) for x in seen[name]} <= leases.owned()
        for (call, _), fences in zip(training.calls, training.fences, strict=True):
            assert fences == {str(keys.shard_of(x)): leases.token(keys.shard_of(x)) for x in call}
        assert summary["coached"] == len(seen[name])
    assert seen["a"] | seen["b"] == set(learners) and not seen["a"] & seen["b"]
    assert await redis.hget(keys.coach_stats, "ticks") == "2"  # fleet-wide counters add up


async def test_a_stalled_owner_is_refused_for_the_shards_it_lost(redis, scripts, keys, prefix):
    for learner in ("x", "y"):
        await create(scripts, keys, learner)
    shard = keys.shard_of("x")
    a, b = replica(redis, keys, "a", ttl_ms=800), replica(redis, keys, "b", ttl_ms=800)
    store_a, store_b = CoachStore(redis, keys, a), CoachStore(redis, keys, b)
    await a.cycle()
    assert await store_a.record_tick(tick_result(1000, ["x"], keys), a.owned()) == []
    await redis.zadd(keys.coach_ready(shard), {"due": 1})  # a review due at 1 ms

    await asyncio.sleep(0.85)  # a stalls past its leases ...
    await settle(b)  # ... and b takes every shard
    assert b.owned() == frozenset(keys.all_shards())
    assert a.token(shard) < b.token(shard)

    before = await shard_keys(redis, prefix)
    # a wakes up and writes with the shards it believed it had: every shard record is refused.
    stale = frozenset(keys.all_shards())
    refused = await store_a.record_tick(tick_result(2000, ["x", "y"], keys), stale)
    assert refused == sorted(stale)
    assert await store_a.promote_due(5000, stale) == (0, sorted(stale))
    assert await shard_keys(redis, prefix) == before  # nothing of a's landed in any shard

    # The new owner's writes land.
    assert await store_b.promote_due(5000, [shard]) == (1, [])
    assert await store_b.record_tick(tick_result(3000, ["x"], keys), b.owned()) == []
    assert await redis.zscore(keys.coach_coached(shard), "x") == 3000


async def test_a_replica_writes_nothing_for_a_shard_it_never_held(redis, keys, prefix):
    leases = replica(redis, keys, "never-acquired")
    store = CoachStore(redis, keys, leases)
    await redis.set(keys.coach_fence(0), 1)  # someone else's first tenure
    await redis.zadd(keys.coach_ready(0), {"due": 1})
    before = await snapshot(redis, prefix)
    assert await store.promote_due(1000, [0]) == (0, [0])
    refused = await store.record_tick(tick_result(1000, ["x"], keys), [0])
    assert refused == sorted({0, keys.shard_of("x")})
    assert await shard_keys(redis, prefix) == {k: v for k, v in before.items() if b":{s:" in k}


async def test_fenced_learners_are_neither_counted_nor_advanced(redis, scripts, keys):
    for learner in ("mine", "taken"):
        await create(scripts, keys, learner)

    class PartlyFenced(FakeTraining):
        async def run_batch(
            self, learners: list[str], rounds_per_learner: int, fences=None
        ) -> BatchOutcome:
            answer = rounds_answer(["mine"], rounds_per_learner, 70.0)
            answer["errors"] = [{"learner": "taken", "code": "fenced", "message": "moved on"}]
            return outcome_of(learners, 200, answer)

    store = CoachStore(redis, keys)
    summary = await CoachLoop(store, PartlyFenced(), AllShards(keys)).tick(WIDE)
    assert summary["coached"] == 1 and summary["fenced"] == 1 and summary["learnerErrors"] == 0
    assert await redis.hget(keys.coach_stats, "learnerErrors") is None
    # Its pass moves on by the rounds it was given (8: an unknown average is aggressive).
    assert await redis.zscore(keys.coach_queue(keys.shard_of("mine")), "mine") == 8.0
    assert await redis.zscore(keys.coach_queue(keys.shard_of("taken")), "taken") == 0.0
