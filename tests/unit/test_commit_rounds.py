"""commit_rounds: events stamped with the server's clock at commit, readiness thresholds from the
coach settings with the caller's defaults, and the incarnation guard that makes training's
learner-state cache safe when a learner is deleted and re-created."""

from __future__ import annotations

import orjson

from shared.commit_rounds import CommitHeader, commit_rounds_args, rejected_of
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


async def _everything(redis, prefix: str) -> dict[str, object]:
    """Every key under the test's prefix with its type and value (a full snapshot)."""
    out: dict[str, object] = {}
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        kind = await redis.type(key)
        if kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "list":
            out[key] = await redis.lrange(key, 0, -1)
        elif kind == "zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            out[key] = await redis.xrange(key)
        else:
            out[key] = await redis.get(key)
    return out


async def test_bad_arguments_are_refused_before_any_write(redis, scripts, keys, prefix):
    import pytest
    from redis.exceptions import ResponseError

    await create(redis, scripts, keys, "a", 7)
    await commit(scripts, keys, "a", 1, 7, 90)  # streams, history and indexes exist
    state = LearnerState(id="a", seed=7, region="eu", active=True, rounds=2)
    good = commit_rounds_args(
        CommitHeader("2", encode(state), "a", "eu", 50, 3, 5000, 100),
        [(orjson.dumps({"trained": ["dsa"]}).decode(), 3)],
    )
    before = await _everything(redis, prefix)

    def with_arg(i: int, value: object) -> list[object]:
        args = list(good)
        args[i - 1] = value
        return args

    cases = [
        with_arg(11, "2"),  # n does not match the argument count
        with_arg(11, "0"),
        with_arg(11, "x"),
        with_arg(1, "one"),
        with_arg(5, "nan"),
        with_arg(6, "inf"),
        with_arg(10, "0"),
        with_arg(15, "not json"),
        with_arg(15, "[1, 2]"),
        with_arg(15, "{}"),
        with_arg(16, "fast"),
        with_arg(13, "abc"),  # an idempotency hash without KEYS[9]
        good[:-1],
    ]
    for args in cases:
        with pytest.raises(ResponseError, match="commit_rounds:") as caught:
            await scripts.commit_rounds(keys=commit_keys(keys, "a"), args=args)
        rejected = rejected_of(caught.value)  # what training raises: a 500 naming the argument
        assert rejected is not None and rejected.status == 500
        assert rejected.message.startswith("commit_rounds:")
    with pytest.raises(ResponseError, match="commit_rounds:"):  # KEYS[9] without the hash
        await scripts.commit_rounds(keys=keys.commit_rounds_keys("a", "some-key-1"), args=good)
    assert await _everything(redis, prefix) == before
    assert (await scripts.commit_rounds(keys=commit_keys(keys, "a"), args=good))[0] == 1


async def test_streams_are_not_trimmed_by_the_commit(redis, scripts, keys):
    await create(redis, scripts, keys, "a", 7)
    state = LearnerState(id="a", seed=7, region="eu", active=True)
    entry = orjson.dumps({"trained": ["dsa"]}).decode()
    for version in range(1, 4):
        header = CommitHeader(str(version), encode(state), "a", "eu", 10, 9, 5000, 100)
        args = commit_rounds_args(header, [(entry, 1)] * 1000)
        assert (await scripts.commit_rounds(keys=commit_keys(keys, "a"), args=args))[0] == 1
    # MAXLEN ~ would have let Redis drop whole nodes of unread entries; nothing may go.
    assert await redis.xlen(keys.stream_rounds) == 3000


async def test_becoming_ready_records_round_and_server_time_in_the_state(redis, scripts, keys):
    await create(redis, scripts, keys, "a", 7)
    await commit(scripts, keys, "a", 1, 7, 10, below=9)  # not ready: no record
    assert await redis.hmget(keys.learner_state("a"), ["rr", "rt"]) == [None, None]
    result = await commit(scripts, keys, "a", 2, 7, 95)
    assert result[4] == 1
    (_, ready), *_ = await redis.xrange(keys.stream_meta)
    rr, rt = await redis.hmget(keys.learner_state("a"), ["rr", "rt"])
    assert (rr, rt) == (ready["round"], ready["ts"])
    await commit(scripts, keys, "a", 3, 7, 96)  # still ready: the record stays the transition's
    assert await redis.hmget(keys.learner_state("a"), ["rr", "rt"]) == [rr, rt]
