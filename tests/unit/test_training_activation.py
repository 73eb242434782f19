"""The throttle (rollback level 1) in-process against a real Redis: the decision rule on its own,
then onboarding's ticks deactivating the newest learners beyond a held target and reactivating
them oldest first, with the coach's queue, training's rounds, the listing and deletion seeing the
mark. Run on a single Redis and on the Redis Cluster (every script on one shard's slot)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.coach.store import CoachStore
from services.training.activation import Step, decide
from services.training.onboarding import Onboarder, OnboardingConfig
from services.training.paging import position
from services.training.store import LearnerInactive, TrainingStore
from shared.errors import api_error_of
from shared.fleet_totals import population

# ---- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "hold", "paused", "learners", "inactive", "step"),
    [
        (None, True, False, 10, 0, Step("none")),
        (6, True, False, 10, 0, Step("deactivate", 4)),
        (6, False, False, 10, 0, Step("none")),  # without hold a lower target only stops growth
        (6, True, True, 10, 0, Step("deactivate", 4)),  # a pause still sheds load
        (6, True, False, 10, 4, Step("none")),  # active == target
        (8, True, False, 10, 4, Step("reactivate", 2)),
        (20, False, False, 10, 4, Step("reactivate", 4)),  # inactive first, before creating
        (20, True, True, 10, 4, Step("none")),  # paused: nothing added
        (20, True, False, 10, 0, Step("create", 10)),  # hold no longer stops onboarding
        (20, True, True, 10, 0, Step("none")),
        (0, True, False, 3, 0, Step("deactivate", 3)),
    ],
)
def test_decide(target, hold, paused, learners, inactive, step) -> None:
    assert decide(target, hold=hold, paused=paused, learners=learners, inactive=inactive) == step


# ---- against Redis -----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def store(redis, scripts, keys) -> AsyncIterator[TrainingStore]:
    store = TrainingStore(redis, scripts, keys, history_limit=5)
    await store.curriculum.init()
    yield store
    await store.aclose()


def _onboarder(redis, scripts, keys, store: TrainingStore, batch: int) -> Onboarder:
    return Onboarder(redis, scripts, keys, store, OnboardingConfig(1.0, ["eu"], batch, 0.2))


async def _ticks(onboarder: Onboarder, bound: int = 100) -> None:
    """Tick until a tick changes nothing more (bounded)."""
    for _ in range(bound):
        before = (onboarder.activation.deactivated, onboarder.activation.reactivated)
        await onboarder.tick(0.0)
        if (onboarder.activation.deactivated, onboarder.activation.reactivated) == before:
            return
    raise AssertionError("the ticks never settled")


async def _order(redis, keys) -> list[str]:
    """Every learner in the fleet's creation order (the listing's positions)."""
    rows = []
    for s in keys.all_shards():
        for learner, seq in await redis.zrange(keys.learners_index(s), 0, -1, withscores=True):
            rows.append((position(int(seq), s, keys.shards), learner))
    return [learner for _, learner in sorted(rows)]


async def _inactive(redis, keys) -> set[str]:
    out: set[str] = set()
    for s in keys.all_shards():
        out.update(await redis.zrange(keys.learners_inactive(s), 0, -1))
    return out


@pytest.mark.backends("single", "cluster")
async def test_hold_throttles_the_newest_and_reactivates_them_last_in_first_out(
    redis, scripts, keys, store
) -> None:
    now = time.time()
    assert await store.create_learners([(f"x-{i}", "eu") for i in range(40)], now) == 40
    order = await _order(redis, keys)
    # A ready learner among the newest: its place in the ready set comes back with it.
    ready_one = order[-3]
    shard = keys.shard_of(ready_one)
    await redis.zrem(keys.coach_queue(shard), ready_one)
    await redis.zadd(keys.coach_ready(shard), {ready_one: 1234567})

    onboarder = _onboarder(redis, scripts, keys, store, batch=4)  # several bounded ticks
    await redis.hset(keys.scale, mapping={"target": "25", "hold": "1"})
    await _ticks(onboarder)
    pop = await population(redis, keys)
    assert (pop.learners, pop.inactive, pop.active) == (40, 15, 25)
    assert await _inactive(redis, keys) == set(order[25:])

    # The coach never picks an inactive learner: its queues hold the 25 oldest only.
    picks = await CoachStore(redis, keys).pick(100, keys.all_shards())
    assert {p.learner for p in picks} == set(order[:25]) - {ready_one}
    assert not await redis.zscore(keys.coach_ready(shard), ready_one)

    # Training refuses an inactive learner's rounds (409 learner_inactive), single and batch.
    newest = order[-1]
    with pytest.raises(LearnerInactive) as err:
        await store.run_round(newest)
    assert api_error_of(err.value).status == 409
    assert api_error_of(err.value).code == "learner_inactive"
    batch = await store.run_batch([newest, order[0]], 2)
    assert batch.failed == [(newest, "learner_inactive")]
    assert [c.learner for c in batch.committed] == [order[0]]
    assert not await redis.zscore(keys.coach_queue(keys.shard_of(newest)), newest)
    # Listed, marked inactive, with all its data.
    listed, _ = await store.list_learners(0, 100)
    assert {x.id for x in listed if x.inactive} == set(order[25:])
    assert len(listed) == 40

    # Without hold a lower target deactivates nothing more; a higher one reactivates the
    # oldest inactive first, so the newest deactivated come back last.
    await redis.hset(keys.scale, mapping={"target": "10", "hold": "0"})
    await _ticks(onboarder)
    assert (await population(redis, keys)).inactive == 15
    await redis.hset(keys.scale, mapping={"target": "30", "hold": "1"})
    await _ticks(onboarder)
    assert await _inactive(redis, keys) == set(order[30:])
    await redis.hset(keys.scale, "target", "40")
    await _ticks(onboarder)
    assert await _inactive(redis, keys) == set()
    assert await redis.zscore(keys.coach_ready(shard), ready_one) == 1234567
    assert await redis.zscore(keys.coach_queue(keys.shard_of(newest)), newest) is not None
    assert not await redis.hexists(keys.learner_state(newest), "inactive")
    await store.run_round(newest)  # coached again


@pytest.mark.backends("single", "cluster")
async def test_start_and_delete_respect_the_mark(redis, scripts, keys, store) -> None:
    now = time.time()
    await store.create_learners([(f"y-{i}", "eu") for i in range(6)], now)
    order = await _order(redis, keys)
    onboarder = _onboarder(redis, scripts, keys, store, batch=100)
    await redis.hset(keys.scale, mapping={"target": "4", "hold": "1"})
    await _ticks(onboarder)
    a, b = order[-1], order[-2]
    # A reset (cas_state `queue`) of an inactive learner leaves the coach's queue alone and is
    # remembered for its reactivation.
    await store.start(a, reset=True)
    assert not await redis.zscore(keys.coach_queue(keys.shard_of(a)), a)
    assert await redis.hget(keys.learner_state(a), "inactive") == "q"
    # Deleting an inactive learner leaves no trace in the inactive set.
    await store.delete_learner(b)
    assert await _inactive(redis, keys) == {a}
    assert (await population(redis, keys)).inactive == 1
    # Paused: nothing is reactivated; resumed: it is.
    await redis.hset(keys.scale, mapping={"target": "5", "paused": "1"})
    await _ticks(onboarder)
    assert await _inactive(redis, keys) == {a}
    await redis.hset(keys.scale, "paused", "0")
    await _ticks(onboarder)
    assert await _inactive(redis, keys) == set()
    assert await redis.zscore(keys.coach_queue(keys.shard_of(a)), a) is not None
