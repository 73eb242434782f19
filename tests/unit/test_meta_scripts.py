"""The meta_commit script against a real redis-server: version checks on both documents, the
log cap, the completed event and the delay stats."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from shared.keys import Keys
from shared.learner_state import LearnerState, encode
from shared.scripts import Scripts, lua_source


@pytest.fixture
def meta_commit(redis: Redis) -> AsyncScript:
    """The meta service's own commit script, registered as its store registers it."""
    return redis.register_script(lua_source("services.meta", "meta_commit"))


async def create(scripts: Scripts, keys: Keys, learner: str) -> None:
    state = LearnerState(id=learner, seed=1, region="eu", created=1.0, active=True)
    await scripts.create_learner(
        keys=keys.create_learner_keys(learner),
        args=[learner, encode(state), "eu", 1],
    )


def commit_keys(keys: Keys, learner: str) -> list[str]:
    return keys.meta_commit_keys(learner)


def args(meta_v: str, doc: dict, *, state_v: str = "", state: str = "", log=(), event=(), lock=""):
    out = [meta_v, orjson.dumps(doc).decode(), 3, state_v, state, 0, len(log), lock]
    out += [orjson.dumps(e).decode() for e in log]
    out += list(event)
    return out


async def test_missing_learner_is_refused(redis, keys, meta_commit):
    res = await meta_commit(keys=commit_keys(keys, "x"), args=args("0", {"a": 1}))
    assert res == [-1]
    assert not await redis.exists(keys.learner_meta("x"))


async def test_meta_version_check_lets_one_of_many_concurrent_writers_win(
    redis, scripts, keys, meta_commit
):
    await create(scripts, keys, "a")
    results = await asyncio.gather(
        *(meta_commit(keys=commit_keys(keys, "a"), args=args("0", {"i": i})) for i in range(8))
    )
    assert sum(1 for r in results if r[0] == 1) == 1
    assert all(r == [0, "meta", "1"] for r in results if r[0] != 1)


async def test_state_version_conflict_changes_nothing(redis, scripts, keys, meta_commit):
    await create(scripts, keys, "a")
    before = await redis.hgetall(keys.learner_state("a"))
    res = await meta_commit(
        keys=commit_keys(keys, "a"),
        args=args("0", {"x": 1}, state_v="7", state="zzz", log=[{"m": 1}]),
    )
    assert res == [0, "state", "1"]
    assert await redis.hgetall(keys.learner_state("a")) == before
    assert not await redis.exists(keys.learner_meta("a"), keys.learner_meta_log("a"))


async def test_commit_writes_state_log_event_and_stats(redis, scripts, keys, meta_commit):
    await create(scripts, keys, "a")
    log = [{"m": i} for i in range(5)]
    event = ["type", "completed", "learner", "a", "round", 9, "delay_ms", 12, "ts", 1]
    res = await meta_commit(
        keys=commit_keys(keys, "a"),
        args=args("0", {"x": 1}, state_v="1", state="new", log=log, event=event),
    )
    assert res == [1, 1, 2]
    assert await redis.hget(keys.learner_state("a"), "s") == "new"
    entries = await redis.lrange(keys.learner_meta_log("a"), 0, -1)
    assert [orjson.loads(e)["m"] for e in entries] == [4, 3, 2]  # newest first, capped at 3
    # The event and the counters go to the learner's shard (its stream, its stats hash).
    shard = keys.shard_of("a")
    ((_, fields),) = await redis.xrange(keys.stream_meta(shard))
    assert fields["type"] == "completed" and fields["delay_ms"] == "12"
    stats = await redis.hgetall(keys.meta_stats(shard))
    assert stats["delayCount"] == "1" and stats["delayMaxMs"] == "12"
    assert abs(int(stats["delayLastAt"]) - time.time() * 1000) < 60_000  # Redis time, in ms


async def test_successful_commit_releases_only_its_own_run_lock(redis, scripts, keys, meta_commit):
    await create(scripts, keys, "a")
    lock = keys.learner_meta_lock("a")
    await redis.set(lock, "mine")
    # A conflict leaves the lock with its holder, who retries.
    res = await meta_commit(keys=commit_keys(keys, "a"), args=args("5", {}, lock="mine"))
    assert res == [0, "meta", "0"] and await redis.get(lock) == "mine"
    # Another caller's token (its lock lapsed and was taken) does not release it.
    res = await meta_commit(keys=commit_keys(keys, "a"), args=args("0", {}, lock="old"))
    assert res[0] == 1 and await redis.get(lock) == "mine"
    res = await meta_commit(keys=commit_keys(keys, "a"), args=args("1", {}, lock="mine"))
    assert res[0] == 1 and not await redis.exists(lock)
