"""Training's in-process learner-state cache never costs an update: writes made behind its back
(another replica, meta, a delete and re-create) are noticed by the commit and recomputed from."""

from __future__ import annotations

import pytest

from shared.keys import Keys
from shared.learner_state import LearnerState, decode, encode

pytestmark = pytest.mark.integration

ROUND = "/api/v1/training/round"
START = "/api/v1/training/start"


async def outside_write(redis, scripts, keys: Keys, learner: str, change) -> int:
    """What another replica or meta does: compare-and-set the state; returns the new version."""
    v, s = await redis.hmget(keys.learner_state(learner), ["v", "s"])
    state = decode(s)
    change(state)
    res = await scripts.cas_state(
        keys=keys.cas_state_keys(learner),
        args=[v, encode(state), learner, "keep"],
    )
    assert res[0] == 1
    return int(res[1])


async def test_outside_write_after_a_cached_round_is_kept(redis, scripts, keys, training):
    assert training.post(START, {"learner": "c"})[0] == 200
    assert training.post(ROUND, {"learner": "c"})[0] == 200  # now cached in the process

    def boost(state: LearnerState) -> None:
        state.retention = 1.5

    await outside_write(redis, scripts, keys, "c", boost)
    status, body = training.post(ROUND, {"learner": "c"})
    assert status == 200 and body["result"]["learnerRound"] == 2
    state = decode(await redis.hget(keys.learner_state("c"), "s"))
    assert state.retention == 1.5 and state.rounds == 2  # neither write lost


async def test_learner_re_created_elsewhere_is_not_overwritten_by_the_cache(
    redis, scripts, keys, training
):
    assert training.post(START, {"learner": "d"})[0] == 200
    assert training.post(ROUND, {"learner": "d"})[0] == 200
    assert training.post(ROUND, {"learner": "d"})[0] == 200
    cached_version = int(await redis.hget(keys.learner_state("d"), "v"))
    old_seed = decode(await redis.hget(keys.learner_state("d"), "s")).seed

    # Another replica deletes "d" and creates it again, and its version climbs back to the
    # number this process has cached.
    await scripts.delete_learner(
        keys=keys.delete_learner_keys("d"),
        args=["d"],
    )
    fresh = LearnerState(id="d", seed=old_seed + 1, region="eu", active=True)
    await scripts.create_learner(
        keys=keys.create_learner_keys("d"),
        args=["d", encode(fresh), "eu", 1],
    )
    version = 1
    while version < cached_version:  # bounded by the cached version
        version = await outside_write(redis, scripts, keys, "d", lambda s: None)
    assert version == cached_version

    status, body = training.post(ROUND, {"learner": "d"})
    assert status == 200
    assert body["result"]["learnerRound"] == 1  # computed from the new incarnation
    state = decode(await redis.hget(keys.learner_state("d"), "s"))
    assert state.seed == old_seed + 1 and state.rounds == 1 and state.region == "eu"


async def test_learner_started_elsewhere_is_not_refused_from_a_cached_inactive_state(
    redis, scripts, keys, training
):
    # A settings change on the inactive `default` learner leaves it cached as inactive here.
    status, _ = training.post("/api/v1/training/settings", {"maxParallel": 3})
    assert status == 200

    def start(state: LearnerState) -> None:
        state.active = True

    await outside_write(redis, scripts, keys, "default", start)
    status, body = training.post(ROUND, {})
    assert status == 200 and body["result"]["learnerRound"] == 1
