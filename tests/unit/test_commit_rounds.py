"""commit_rounds: events stamped with the server's clock at commit, readiness thresholds passed by
the caller (the script reads nothing outside the learner's shard), round ids from the shard's
counter above the shard's base, the fencing token of a coach's commit, and the incarnation guard
that makes training's learner-state cache safe when a learner is deleted and re-created."""

from __future__ import annotations

import orjson

from shared.commit_rounds import CommitHeader, commit_rounds_args, rejected_of
from shared.history import decode as decode_history
from shared.keys import ROUND_ID_STRIDE, Keys, round_id_base
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


def header_of(keys: Keys, learner: str, version: int, seed: int, avg: float, **kw) -> CommitHeader:
    state = LearnerState(id=learner, seed=seed, region="eu", active=True, rounds=version)
    return CommitHeader(
        str(version),
        encode(state),
        learner,
        "eu",
        avg,
        kw.pop("below", 0),
        5000,
        100,
        round_base=round_id_base(keys.shard_of(learner)),
        **kw,
    )


async def commit(
    scripts, keys, learner, version, seed, avg, *, guard=None, below=0, thresholds=None, fence=None
):
    min_avg, max_below = thresholds or (DEFAULT_MIN_AVG_MASTERY, DEFAULT_MAX_BELOW)
    header = header_of(
        keys, learner, version, seed, avg, below=below, min_avg=min_avg, max_below=max_below
    )
    entry = orjson.dumps({"trained": ["dsa"]}).decode()
    args = commit_rounds_args(header, [(entry, 3)], guard, fence=fence)
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
    shard = keys.shard_of("a")
    (_, rnd), *_ = await redis.xrange(keys.stream_rounds(shard))
    (_, ready), *_ = await redis.xrange(keys.stream_meta(shard))
    assert ready["type"] == "ready"
    for ts in (int(rnd["ts"]), int(ready["ts"])):
        assert before <= ts <= after


async def test_guard_refuses_a_state_of_another_incarnation(redis, scripts, keys):
    await create(redis, scripts, keys, "a", 7)
    stale = await commit(scripts, keys, "a", 1, 7, 10, guard='"sd":8,')
    assert stale[0] == 0 and stale[1] == "1"
    assert decode(stale[2]).seed == 7  # the current state, to recompute from
    stream = keys.stream_rounds(keys.shard_of("a"))
    assert await redis.xlen(stream) == 0
    assert await redis.hget(keys.learner_state("a"), "v") == "1"
    ok = await commit(scripts, keys, "a", 1, 7, 10, guard='"sd":7,')
    assert ok[0] == 1 and ok[1] == 2
    assert await redis.xlen(stream) == 1


async def test_readiness_uses_the_thresholds_passed_not_the_coach_settings(redis, scripts, keys):
    await create(redis, scripts, keys, "a", 7)
    res = await commit(scripts, keys, "a", 1, 7, 70, below=2, thresholds=(60, 2))
    assert res[3] == 1
    res = await commit(scripts, keys, "a", 2, 7, 70, below=2, thresholds=(80, 2))
    assert res[3] == 0
    # The coach settings live in another slot: the script must not read them (a Cluster would
    # refuse it), so a value there changes nothing; training passes what it read.
    await redis.hset(keys.coach_settings, mapping={"minAvgMastery": "10", "maxBelow80": "9"})
    res = await commit(scripts, keys, "a", 3, 7, 70, below=2, thresholds=(80, 2))
    assert res[3] == 0


def learners_in_distinct_shards(keys: Keys, count: int) -> list[str]:
    found: dict[int, str] = {}
    for i in range(10_000):
        learner = f"x{i}"
        found.setdefault(keys.shard_of(learner), learner)
        if len(found) == count:
            return [found[s] for s in sorted(found)]
    raise AssertionError("not enough shards")


async def test_round_ids_are_the_shards_base_plus_its_counter(redis, scripts, keys):
    """Every shard has its own counter; an id carries its shard's base, so ids of two shards never
    meet, and ids at a high base stay exact integers (no `1e+15` in history, stream or reply)."""
    learners = learners_in_distinct_shards(keys, 3)
    wide = Keys(keys.prefix + "w", 1024)
    high = next(f"h{i}" for i in range(100_000) if wide.shard_of(f"h{i}") >= 1000)
    for learner in learners:
        await create(redis, scripts, keys, learner, 7)
    await create(redis, scripts, wide, high, 7)
    seen: set[int] = set()
    for k, learner in [*((keys, x) for x in learners), (wide, high)]:
        shard = k.shard_of(learner)
        entry = orjson.dumps({"trained": ["dsa"]}).decode()
        for version in (1, 2):
            header = header_of(k, learner, version, 7, 10, below=9)
            res = await scripts.commit_rounds(
                keys=k.commit_rounds_keys(learner),
                args=commit_rounds_args(header, [(entry, 1)] * 3),
            )
            assert res[0] == 1
            assert res[2] == shard * ROUND_ID_STRIDE + 3 * (version - 1) + 1
        history = [h["round"] for h in decode_history(await redis.get(k.learner_history(learner)))]
        base = shard * ROUND_ID_STRIDE
        assert history == [base + n for n in range(6, 0, -1)]
        streamed = [int(e["round"]) for _, e in await redis.xrange(k.stream_rounds(shard))]
        assert streamed == [base + n for n in range(1, 7)]
        assert await redis.get(k.rounds_seq(shard)) == "6"
        assert not seen & set(history)
        seen |= set(history)
    # The idempotency record keeps the first id exactly too: a replay answers the same ids.
    header = header_of(wide, high, 3, 7, 10, below=9)
    entry = orjson.dumps({"trained": ["dsa"]}).decode()
    args = commit_rounds_args(header, [(entry, 1)] * 2, idempotency_hash="h1")
    idem_keys = wide.commit_rounds_keys(high, "key-0001")
    first = await scripts.commit_rounds(keys=idem_keys, args=args)
    again = await scripts.commit_rounds(keys=idem_keys, args=args)
    assert first[0] == 1 and again[0] == 2 and again[2] == first[2]
    assert first[2] == wide.shard_of(high) * ROUND_ID_STRIDE + 7


async def test_a_fenced_commit_writes_only_under_the_current_token(redis, scripts, keys, prefix):
    await create(redis, scripts, keys, "a", 7)
    fence_key = keys.coach_fence(keys.shard_of("a"))
    await redis.set(fence_key, 5)
    before = await _everything(redis, prefix)
    for stale in (4, 6):
        assert await commit(scripts, keys, "a", 1, 7, 90, fence=stale) == [-3, "5"]
    assert await _everything(redis, prefix) == before
    await redis.delete(fence_key)  # no lease ever taken: no token can match
    assert (await commit(scripts, keys, "a", 1, 7, 90, fence=5))[0] == -3
    await redis.set(fence_key, 5)
    ok = await commit(scripts, keys, "a", 1, 7, 90, fence=5)
    assert ok[0] == 1
    assert (await commit(scripts, keys, "a", 2, 7, 90))[0] == 1  # unfenced: a client's round


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
        CommitHeader("2", encode(state), "a", "eu", 50, 3, 5000, 100, round_base=0),
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
        with_arg(8, "high"),  # a threshold
        with_arg(15, "-1"),  # the round id base
        with_arg(15, "1e15"),
        with_arg(16, "token"),  # the fencing token
        with_arg(17, "\u00e9"),  # the history anchor: ASCII only
        with_arg(18, "not json"),
        with_arg(18, "[1, 2]"),
        with_arg(18, "{}"),
        with_arg(18, ""),
        with_arg(18, "\x40packed"),  # a packed body starts below 64
        with_arg(18, "\x0c\u00e9"),  # and is ASCII
        with_arg(19, "fast"),
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
        header = CommitHeader(
            str(version), encode(state), "a", "eu", 10, 9, 5000, 100, round_base=0
        )
        args = commit_rounds_args(header, [(entry, 1)] * 1000)
        assert (await scripts.commit_rounds(keys=commit_keys(keys, "a"), args=args))[0] == 1
    # MAXLEN ~ would have let Redis drop whole nodes of unread entries; nothing may go.
    assert await redis.xlen(keys.stream_rounds(keys.shard_of("a"))) == 3000


async def test_becoming_ready_records_round_and_server_time_in_the_state(redis, scripts, keys):
    await create(redis, scripts, keys, "a", 7)
    await commit(scripts, keys, "a", 1, 7, 10, below=9)  # not ready: no record
    assert await redis.hmget(keys.learner_state("a"), ["rr", "rt"]) == [None, None]
    result = await commit(scripts, keys, "a", 2, 7, 95)
    assert result[4] == 1
    (_, ready), *_ = await redis.xrange(keys.stream_meta(keys.shard_of("a")))
    rr, rt = await redis.hmget(keys.learner_state("a"), ["rr", "rt"])
    assert (rr, rt) == (ready["round"], ready["ts"])
    await commit(scripts, keys, "a", 3, 7, 96)  # still ready: the record stays the transition's
    assert await redis.hmget(keys.learner_state("a"), ["rr", "rt"]) == [rr, rt]
