"""The atomic Lua steps against a real redis-server."""

from __future__ import annotations

import asyncio
from importlib import resources

import orjson

from shared.commit_rounds import CommitHeader, commit_rounds_args
from shared.history import decode as decode_history
from shared.keys import Keys, round_id_base
from shared.learner_state import DomainState, LearnerState, decode, encode
from shared.scripts import SCRIPT_NAMES, Scripts, lua_source


async def create(redis, scripts: Scripts, keys: Keys, learner: str, *, active: bool = True) -> None:
    state = LearnerState(id=learner, seed=7, region="eu", created=1.0, active=active)
    await scripts.create_learner(
        keys=keys.create_learner_keys(learner),
        args=[learner, encode(state), "eu", 1 if active else 0],
    )


def commit_keys(keys: Keys, learner: str) -> list[str]:
    return keys.commit_rounds_keys(learner)


async def commit(redis, scripts, keys, learner, version, avg, below, n=1):
    state = LearnerState(id=learner, seed=7, region="eu", active=True, rounds=version)
    header = CommitHeader(
        str(version),
        encode(state),
        learner,
        "eu",
        avg,
        below,
        5000,
        100,
        round_base=round_id_base(keys.shard_of(learner)),
    )
    entry = orjson.dumps({"trained": ["dsa"]}).decode()
    args = commit_rounds_args(header, [(entry, 3)] * n)
    return await scripts.commit_rounds(keys=commit_keys(keys, learner), args=args)


async def test_create_learner_is_idempotent_and_indexed(redis, scripts, keys):
    await create(redis, scripts, keys, "a")
    await create(redis, scripts, keys, "a")
    s = keys.shard_of("a")
    assert await redis.zcard(keys.learners_index(s)) == 1
    assert await redis.hget(keys.learners_regions(s), "eu") == "1"
    assert await redis.zscore(keys.coach_queue(s), "a") is not None
    assert decode(await redis.hget(keys.learner_state("a"), "s")).id == "a"


async def test_commit_assigns_contiguous_ids_and_rejects_stale_version(redis, scripts, keys):
    await create(redis, scripts, keys, "a")
    base = round_id_base(keys.shard_of("a"))
    ok = await commit(redis, scripts, keys, "a", 1, 10, 9, n=3)
    assert ok[0] == 1 and ok[1] == 2 and ok[2] == base + 1
    stale = await commit(redis, scripts, keys, "a", 1, 10, 9)
    assert stale[0] == 0 and stale[1] == "2"
    history = decode_history(await redis.get(keys.learner_history("a")))
    assert [h["round"] for h in history] == [base + 3, base + 2, base + 1]
    assert await redis.xlen(keys.stream_rounds(keys.shard_of("a"))) == 3


async def test_commit_moves_learner_between_queue_and_ready_and_emits_one_ready_event(
    redis, scripts, keys
):
    await create(redis, scripts, keys, "a")
    s = keys.shard_of("a")
    await commit(redis, scripts, keys, "a", 1, 80, 2)
    assert await redis.zscore(keys.coach_queue(s), "a") is None
    assert await redis.zscore(keys.coach_ready(s), "a") == 5000
    await commit(redis, scripts, keys, "a", 2, 85, 1)  # still ready: no second event
    events = await redis.xrange(keys.stream_meta(s))
    assert [e[1]["type"] for e in events] == ["ready"]
    await commit(redis, scripts, keys, "a", 3, 50, 5)  # fell back below the bar
    assert await redis.zscore(keys.coach_queue(s), "a") is not None
    assert await redis.zscore(keys.coach_ready(s), "a") is None


async def test_concurrent_cas_writers_cannot_both_win(redis, scripts, keys):
    await create(redis, scripts, keys, "a")
    blob = encode(LearnerState(id="a", seed=7, domains={"dsa": DomainState(skill=0.5)}))
    k = keys.cas_state_keys("a")
    results = await asyncio.gather(
        *(scripts.cas_state(keys=k, args=["1", blob, "a", "keep"]) for _ in range(10))
    )
    assert sum(1 for r in results if r[0] == 1) == 1


async def test_delete_learner_erases_every_key_and_index(redis, scripts, keys):
    await create(redis, scripts, keys, "a")
    await commit(redis, scripts, keys, "a", 1, 10, 9)
    s = keys.shard_of("a")
    await redis.sadd(keys.coach_fastlane(s), "a")
    k = keys.delete_learner_keys("a")
    assert await scripts.delete_learner(keys=k, args=["a"]) == 1
    assert not await redis.exists(*keys.learner_keys("a"))
    assert await redis.zcard(keys.learners_index(s)) == 0
    assert await redis.hlen(keys.learners_regions(s)) == 0
    assert not await redis.sismember(keys.coach_fastlane(s), "a")
    assert await scripts.delete_learner(keys=k, args=["a"]) == 0


async def test_scripts_survive_script_flush(redis, scripts, keys):
    await redis.script_flush()
    await create(redis, scripts, keys, "b")  # NOSCRIPT is answered by reloading
    assert await redis.zcard(keys.learners_index(keys.shard_of("b"))) == 1


def test_the_shared_registry_holds_exactly_the_scripts_under_shared_lua() -> None:
    """A script used by one service lives beside it and is registered by that service alone."""
    shared = {
        p.name[:-4] for p in resources.files("shared.lua").iterdir() if p.name.endswith(".lua")
    }
    assert set(SCRIPT_NAMES) == shared
    assert lua_source("services.reports", "reports_apply").startswith("-- Apply a batch")
    assert lua_source("services.meta", "meta_commit").startswith("-- Commit one meta")
