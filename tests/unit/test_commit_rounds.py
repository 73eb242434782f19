"""commit_rounds: events stamped with the server's clock at commit, readiness thresholds from the
coach settings with the caller's defaults, and the incarnation guard that makes training's
learner-state cache safe when a learner is deleted and re-created."""

from __future__ import annotations

import orjson

from shared.commit_rounds import CommitHeader, commit_rounds_args
from shared.keys import Keys
from shared.learner_state import LearnerState, decode, encode
from shared.readiness import DEFAULT_MAX_BELOW, DEFAULT_MIN_AVG_MASTERY
from shared.scripts import Scripts


async def create(redis, scripts: Scripts, keys: Keys, learner: str, seed: int) -> None:
    state = LearnerState(id=learner, seed=seed, region="eu", created=1.0, active=True)
    await scripts.create_learner(
        keys=keys.create_learner_keys(learner),
        args=[learner, encode(state), "eu", 1],
    )


def commit_keys(keys: Keys, learner: str) -> list[str]:
    return keys.commit_rounds_keys(learner)


async def commit(scripts, keys, learner, version, seed, avg, *, guard=None, below=0, defaults=None):
    state = LearnerState(id=learner, seed=seed, region="eu", active=True, rounds=version)
    min_avg, max_below = defaults or (DEFAULT_MIN_AVG_MASTERY, DEFAULT_MAX_BELOW)
    header = CommitHeader(
        str(version), encode(state), learner, "eu", avg, below, 5000, 100, min_avg, max_below
    )
    entry = orjson.dumps({"trained": ["dsa"]}).decode()
    args = commit_rounds_args(header, [(entry, 3)], guard)
    return await scripts.commit_rounds(keys=commit_keys(keys, learner), args=args)


async def server_ms(redis) -> int:
    sec, usec = await redis.time()
    return sec * 1000 + usec // 1000


async def test_events_carry_the_server_time_of_the_commit(redis, scripts, keys):
    await create(redis, scripts, keys, "a", 7)
    before = await server_ms(redis)
    result = await commit(scripts, keys, "a", 1, 7, 90)  # ready: a ready event too
    after = await server_ms(redis)
    assert result[0] == 1 and result[4] == 1
    (_, rnd), *_ = await redis.xrange(keys.stream_rounds)
    (_, ready), *_ = await redis.xrange(keys.stream_meta)
    assert ready["type"] == "ready"
    for ts in (int(rnd["ts"]), int(ready["ts"])):
        assert before <= ts <= after


async def test_guard_refuses_a_state_of_another_incarnation(redis, scripts, keys):
    await create(redis, scripts, keys, "a", 7)
    stale = await commit(scripts, keys, "a", 1, 7, 10, guard='"sd":8,')
    assert stale[0] == 0 and stale[1] == "1"
    assert decode(stale[2]).seed == 7  # the current state, to recompute from
    assert await redis.xlen(keys.stream_rounds) == 0
    assert await redis.hget(keys.learner_state("a"), "v") == "1"
    ok = await commit(scripts, keys, "a", 1, 7, 10, guard='"sd":7,')
    assert ok[0] == 1 and ok[1] == 2
    assert await redis.xlen(keys.stream_rounds) == 1


async def test_readiness_uses_the_coach_settings_else_the_callers_defaults(redis, scripts, keys):
    await create(redis, scripts, keys, "a", 7)
    # No coach settings: the defaults passed by the caller decide (60 <= 70, 2 <= 2).
    res = await commit(scripts, keys, "a", 1, 7, 70, below=2, defaults=(60, 2))
    assert res[3] == 1
    res = await commit(scripts, keys, "a", 2, 7, 70, below=2, defaults=(80, 2))
    assert res[3] == 0
    # Fields in the coach settings win over the defaults; an unreadable one falls back to them.
    await redis.hset(keys.coach_settings, mapping={"minAvgMastery": "65", "maxBelow80": "x"})
    res = await commit(scripts, keys, "a", 3, 7, 70, below=2, defaults=(80, 2))
    assert res[3] == 1
    res = await commit(scripts, keys, "a", 4, 7, 70, below=2, defaults=(80, 1))
    assert res[3] == 0
