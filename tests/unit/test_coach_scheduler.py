"""Stride scheduling of the coach queue against a real Redis (no HTTP): fairness between the fast
lane and the normal lane, XX advances, due reviews, rounds per learner and call planning."""

from __future__ import annotations

from collections import Counter

from services.coach import scheduler
from services.coach.scheduler import Pick
from services.coach.store import CoachStore
from services.coach.tick import TickResult
from shared.keys import Keys
from shared.learner_state import LearnerState, encode


def queue(keys: Keys, learner: str) -> str:
    return keys.coach_queue(keys.shard_of(learner))


async def join_fast_lane(redis, keys: Keys, *learners: str) -> None:
    for learner in learners:
        await redis.sadd(keys.coach_fastlane(keys.shard_of(learner)), learner)


async def create(scripts, keys, learner: str) -> None:
    state = LearnerState(id=learner, seed=1, region="eu", created=1.0, active=True)
    await scripts.create_learner(
        keys=keys.create_learner_keys(learner),
        args=[learner, encode(state), "eu", 1],
    )


async def advance(store: CoachStore, picks: list[Pick], weight: float) -> None:
    """The pass advances of a tick (its record, with nothing coached)."""
    result = TickResult(1_000_000, {"needing": 0, "promoted": 0, "rounds": 0}, "", weight=weight)
    result.advanced.extend(picks)
    assert await store.record_tick(result, store.keys.all_shards()) == []


async def simulate(redis, scripts, keys, *, ticks: int, per_tick: int, weight: int) -> Counter:
    """Ticks over every shard's queue at once, as a coach that owns every shard runs them."""
    store = CoachStore(redis, keys)
    picked: Counter = Counter()
    for _ in range(ticks):
        picks = await store.pick(per_tick, keys.all_shards())
        picked.update(p.learner for p in picks)
        await advance(store, picks, weight)
    return picked


async def test_fast_lane_gets_weight_times_the_rounds_under_contention(redis, scripts, keys):
    normal = [f"n{i}" for i in range(30)]
    fast = [f"f{i}" for i in range(10)]
    for learner in normal + fast:
        await create(scripts, keys, learner)
    await join_fast_lane(redis, keys, *fast)

    # 40 learners, 8 per tick: heavy contention.
    picked = await simulate(redis, scripts, keys, ticks=300, per_tick=8, weight=3)

    per_fast = sum(picked[x] for x in fast) / len(fast)
    per_normal = sum(picked[x] for x in normal) / len(normal)
    assert 2.7 <= per_fast / per_normal <= 3.3, (per_fast, per_normal)
    # Within a lane everyone gets the same share (no starvation).
    assert max(picked[x] for x in normal) - min(picked[x] for x in normal) <= 2
    assert max(picked[x] for x in fast) - min(picked[x] for x in fast) <= 2


async def test_weight_one_is_plain_round_robin(redis, scripts, keys):
    learners = [f"l{i}" for i in range(12)]
    for learner in learners:
        await create(scripts, keys, learner)
    await join_fast_lane(redis, keys, "l0", "l1")
    picked = await simulate(redis, scripts, keys, ticks=60, per_tick=4, weight=1)
    assert set(picked.values()) == {20}


async def test_without_contention_everyone_is_coached_every_tick(redis, scripts, keys):
    for learner in ("a", "b", "c"):
        await create(scripts, keys, learner)
    await join_fast_lane(redis, keys, "a")
    picked = await simulate(redis, scripts, keys, ticks=10, per_tick=16, weight=5)
    assert picked == Counter({"a": 10, "b": 10, "c": 10})


async def test_advance_does_not_readd_a_learner_that_left_the_queue(redis, scripts, keys):
    for learner in ("a", "b"):
        await create(scripts, keys, learner)
    store = CoachStore(redis, keys)
    picks = await store.pick(10, keys.all_shards())
    await redis.zrem(queue(keys, "a"), "a")  # the commit script found it ready meanwhile
    await advance(store, picks, 2)
    assert await redis.zscore(queue(keys, "a"), "a") is None
    assert await redis.zscore(queue(keys, "b"), "b") == 1.0


async def test_newcomers_join_at_their_shards_head_pass(redis, scripts, prefix):
    keys = Keys(prefix, shards=1)  # one queue: the head pass is a, b's
    for learner in ("a", "b"):
        await create(scripts, keys, learner)
    store = CoachStore(redis, keys)
    for _ in range(5):
        await advance(store, await store.pick(10, keys.all_shards()), 1)
    await create(scripts, keys, "late")
    assert await redis.zscore(keys.coach_queue(0), "late") == 5.0


async def test_due_reviews_move_back_into_the_queue(redis, scripts, keys):
    await create(scripts, keys, "q")
    shard = keys.shard_of("q")
    await redis.zadd(keys.coach_queue(shard), {"q": 7})
    await redis.zadd(keys.coach_ready(shard), {"due": 1000, "later": 9_000_000_000_000})
    await redis.zadd(keys.coach_ready(shard + 1), {"other": 1000})  # a shard not asked for
    moved = await CoachStore(redis, keys).promote_due(2000, [shard])
    assert moved == (1, [])
    assert await redis.zrange(keys.coach_ready(shard), 0, -1) == ["later"]
    assert await redis.zscore(keys.coach_queue(shard), "due") == 7.0
    assert await redis.zrange(keys.coach_ready(shard + 1), 0, -1) == ["other"]


def test_rounds_for_applies_aggressive_hyper_and_cap():
    base = dict(max_rounds=4, aggressive_mode=True, aggressive_threshold=50, hyper_mode=False)
    assert scheduler.rounds_for(80, aggressive_multiplier=2, **base) == 4
    assert scheduler.rounds_for(30, aggressive_multiplier=2, **base) == 8
    assert scheduler.rounds_for(None, aggressive_multiplier=2.5, **base) == 10
    hyper = dict(base, hyper_mode=True)
    assert scheduler.rounds_for(30, aggressive_multiplier=2, **hyper) == 16
    assert scheduler.rounds_for(80, aggressive_multiplier=2, **hyper) == 8
    big = dict(base, max_rounds=40, hyper_mode=True)
    assert scheduler.rounds_for(0, aggressive_multiplier=10, **big) == 50


def test_plan_calls_respects_batch_size_and_the_1000_round_bound():
    assignments = [(f"l{i}", 8 if i % 2 else 4) for i in range(10)]
    calls = scheduler.plan_calls(assignments, batch_size=4)
    assert sorted(x for call in calls for x in call) == sorted(assignments)
    for call in calls:
        assert len({r for _, r in call}) == 1
    big = [(f"l{i}", 50) for i in range(100)]
    calls = scheduler.plan_calls(big, batch_size=100)
    assert all(len(call) * 50 <= 1000 for call in calls)
    assert sum(len(c) for c in calls) == 100


async def test_coverage_counts_queued_learners_coached_in_the_last_minute(redis, keys):
    now = 10_000_000
    # Two shards, each: a, b coached recently; c too long ago; gone left the queue (ready)
    # after being coached. Shard 3 is twice shard 1's size and weighs twice.
    for shard, copies in ((1, 1), (3, 2)):
        for i in range(copies):
            await redis.zadd(keys.coach_queue(shard), {f"{x}{i}": 0 for x in "abcd"})
            await redis.zadd(
                keys.coach_coached(shard),
                {f"a{i}": now - 1000, f"b{i}": now, f"c{i}": now - 120_000, f"gone{i}": now},
            )
    await redis.zadd(keys.coach_queue(5), {"e": 0})  # never coached
    store = CoachStore(redis, keys)
    cover = await store.coverage(now)
    assert cover == {"ratio": 0.4615, "needing": 13, "coachedLastMinute": 9, "estimated": False}
    for shard in (1, 3, 5):
        await redis.delete(keys.coach_queue(shard))
    assert (await store.coverage(now))["ratio"] is None


async def test_weight_shares_rounds_when_learners_get_different_rounds_a_pick(redis, scripts, keys):
    # Normal learners below the aggressive threshold get 8 rounds a pick, fast-lane ones above
    # it get 4: the passes move on by the rounds given, so rounds still split 1 : weight.
    normal = [f"n{i}" for i in range(24)]
    fast = [f"f{i}" for i in range(8)]
    for learner in normal + fast:
        await create(scripts, keys, learner)
    await join_fast_lane(redis, keys, *fast)
    store = CoachStore(redis, keys)
    rounds: Counter = Counter()
    for _ in range(400):
        picks = await store.pick(6, keys.all_shards())
        given = {p.learner: 4 if p.fast else 8 for p in picks}
        rounds.update(given)
        result = TickResult(1, {"needing": 0, "promoted": 0, "rounds": 0}, "", weight=2)
        result.advanced.extend(picks)
        result.rounds_of.update(given)
        assert await store.record_tick(result, keys.all_shards()) == []
    per_fast = sum(rounds[x] for x in fast) / len(fast)
    per_normal = sum(rounds[x] for x in normal) / len(normal)
    assert 1.8 <= per_fast / per_normal <= 2.2, (per_fast, per_normal)
    assert per_normal >= 60  # enough rounds each for the ratio to mean something
