"""The meta engine in-process against a real redis-server: a learner-state write by training
between meta's read and meta's commit is retried, never overwritten."""

from __future__ import annotations

import orjson

from services.meta.engine import MetaEngine, Trigger
from services.meta.packing import unpack
from services.meta.store import MetaStore, Snapshot, merge_stats
from shared.commit_rounds import CommitHeader, commit_rounds_args
from shared.learner_state import DomainState, LearnerState, decode, encode


async def meta_events(redis, keys) -> list:
    """Every shard's meta stream entries (a learner's events are in its shard's stream)."""
    out = []
    for shard in keys.all_shards():
        out += await redis.xrange(keys.stream_meta(shard))
    return out


async def fleet_stats(redis, keys) -> dict[str, int]:
    """The meta stats summed over the shards, as the service answers them."""
    parts = [await redis.hgetall(keys.meta_stats(shard)) for shard in keys.all_shards()]
    return merge_stats(parts)


class InterleavingStore(MetaStore):
    """After the first `n` snapshots, commits a "training round" (rounds + 1, new domain) with
    the version-checked cas_state script, as training would between meta's read and write."""

    def __init__(self, *args, interleave: int = 1) -> None:
        super().__init__(*args)
        self.interleave = interleave
        self.snapshots = 0

    async def snapshot(self, learner: str, log_entries: int = 0) -> Snapshot:
        snap = await super().snapshot(learner, log_entries)
        self.snapshots += 1
        if self.snapshots <= self.interleave:
            v, raw = await self.redis.hmget(self.keys.learner_state(learner), ["v", "s"])
            state = decode(raw)
            state.rounds += 1
            state.domains[f"topic{self.snapshots}"] = DomainState(skill=0.5, attempts=1)
            res = await self.scripts.cas_state(
                keys=self.keys.cas_state_keys(learner),
                args=[v, encode(state), learner, "keep"],
            )
            assert res[0] == 1
        return snap


async def make(redis, scripts, keys, learner: str) -> None:
    state = LearnerState(
        id=learner,
        seed=1,
        active=True,
        domains={
            "dsa": DomainState(skill=0.5, half_life=3600.0, last=1.0, attempts=3, mastery=60.0)
        },
    )
    await scripts.create_learner(
        keys=keys.create_learner_keys(learner),
        args=[learner, encode(state), "local", 1],
    )


async def test_boost_retries_after_a_concurrent_training_write(redis, scripts, keys):
    await make(redis, scripts, keys, "a")
    store = InterleavingStore(redis, keys, scripts, interleave=2)
    result = await MetaEngine(store).boost("a", 0.1, 0.2)
    assert store.snapshots == 3  # two conflicts, then the commit
    assert result["booster"]["ok"] is True
    state = decode(await redis.hget(keys.learner_state("a"), "s"))
    assert state.rounds == 2 and {"topic1", "topic2"} <= set(state.domains)  # training kept
    assert state.retention == 1.1 and state.transfer == 0.2  # boost applied once
    assert state.domains["dsa"].half_life == 3960.0


async def test_run_all_retries_after_a_concurrent_training_write(redis, scripts, keys):
    await make(redis, scripts, keys, "b")
    store = InterleavingStore(redis, keys, scripts, interleave=1)
    result = await MetaEngine(store).run_all("b", None)
    assert result["ran"] == [1, 2, 3, 4]
    state = decode(await redis.hget(keys.learner_state("b"), "s"))
    assert state.rounds == 1 and "topic1" in state.domains
    assert state.retention > 1.0
    assert await redis.llen(keys.learner_meta_log("b")) > 0
    assert not await redis.exists(keys.learner_meta_lock("b"))  # released by the commit


async def test_run_all_answers_the_log_as_stored_and_frees_the_lock(redis, scripts, keys):
    # run_all builds its answer's log from the snapshot plus what it committed, without reading
    # the log again: it must equal what a later report reads from Redis.
    await make(redis, scripts, keys, "c")
    engine = MetaEngine(MetaStore(redis, keys, scripts))
    await engine.start("c")
    first = await engine.run_all("c", None)
    assert first["ran"] == [1, 2, 3, 4]
    stored = await engine.report("c")
    stored.pop("learner")
    assert first["report"] == stored and first["report"]["activityLog"]
    again = await engine.run_all("c", None)  # nothing left to run: no commit, lock released
    assert again["ran"] == [] and again["report"] == first["report"]
    assert not await redis.exists(keys.learner_meta_lock("c"))


async def test_run_batch_runs_each_learner_once_and_answers_each(redis, scripts, keys):
    for learner in ("d1", "d2", "d3"):
        await make(redis, scripts, keys, learner)
    # d1 became ready at round 7 (the record commit_rounds writes on that transition).
    await redis.hset(keys.learner_state("d1"), mapping={"rr": 7, "rt": 1000})
    engine = MetaEngine(MetaStore(redis, keys, scripts))
    items = [("d1", Trigger(7, 1000)), ("nobody", Trigger(8, 1000)), ("d2", None), ("d3", None)]
    results = await engine.run_batch(items)
    assert [r["learner"] for r in results] == ["d1", "nobody", "d2", "d3"]
    assert [r["status"] for r in results] == [200, 404, 200, 200]
    assert results[0]["ran"] == [1, 2, 3, 4] and results[0]["delay_ms"] > 0
    assert results[1]["error"]["code"] == "learner_not_found"
    assert not await redis.exists(keys.learner_meta("nobody"))
    for learner in ("d1", "d2", "d3", "nobody"):  # every lock released (commit or release)
        assert not await redis.exists(keys.learner_meta_lock(learner))
    again = await engine.run_batch([("d1", Trigger(7, 1000)), ("d2", None)])
    assert [r["ran"] for r in again] == [[], []]  # exactly once: nothing left to run
    events = await meta_events(redis, keys)
    completed = [f for _, f in events if f.get("type") == "completed"]
    assert sorted(f["learner"] for f in completed) == ["d1", "d2", "d3"]


async def test_run_batch_after_a_script_flush_runs_each_commit_once(redis, scripts, keys):
    # A Redis restart forgets the scripts: the batch's commits come back NOSCRIPT (not run),
    # are loaded and sent again, and each learner's phases are recorded exactly once.
    for learner in ("f1", "f2"):
        await make(redis, scripts, keys, learner)
    engine = MetaEngine(MetaStore(redis, keys, scripts))
    await redis.script_flush()
    results = await engine.run_batch([("f1", Trigger(3, 1000)), ("f2", Trigger(4, 1000))])
    assert [r["ran"] for r in results] == [[1, 2, 3, 4], [1, 2, 3, 4]]
    assert (await fleet_stats(redis, keys)).get("phasesRun") == 8
    for learner in ("f1", "f2"):
        assert not await redis.exists(keys.learner_meta_lock(learner))


class BatchInterleavingStore(MetaStore):
    """Commits a "training round" to every learner right after the batch's snapshots were read,
    so each of the batch's commits meets a version conflict."""

    async def lock_and_snapshot_many(self, learners):
        answer = await super().lock_and_snapshot_many(learners)
        for learner in learners:
            v, raw = await self.redis.hmget(self.keys.learner_state(learner), ["v", "s"])
            if raw is None:
                continue
            state = decode(raw)
            state.rounds += 1
            state.domains["between"] = DomainState(skill=0.5, attempts=1)
            res = await self.scripts.cas_state(
                keys=self.keys.cas_state_keys(learner),
                args=[v, encode(state), learner, "keep"],
            )
            assert res[0] == 1
        return answer


async def test_run_batch_recomputes_a_learner_whose_commit_met_a_training_write(
    redis, scripts, keys
):
    for learner in ("g1", "g2"):
        await make(redis, scripts, keys, learner)
    engine = MetaEngine(BatchInterleavingStore(redis, keys, scripts))
    results = await engine.run_batch([("g1", Trigger(9, 1000)), ("g2", None)])
    assert [(r["status"], r["ran"]) for r in results] == [(200, [1, 2, 3, 4])] * 2
    for learner in ("g1", "g2"):
        state = decode(await redis.hget(keys.learner_state(learner), "s"))
        assert state.rounds == 1 and "between" in state.domains  # training's write kept
        assert state.retention > 1.0  # and phase 4's effect applied on top, once
        assert not await redis.exists(keys.learner_meta_lock(learner))
    assert (await fleet_stats(redis, keys)).get("phasesRun") == 8


async def test_trigger_delay_comes_from_the_servers_record_not_the_caller(redis, scripts, keys):
    await make(redis, scripts, keys, "t1")
    state = decode(await redis.hget(keys.learner_state("t1"), "s"))
    entry = orjson.dumps({"trained": ["dsa"]}).decode()
    header = CommitHeader("1", encode(state), "t1", "local", 95.0, 0, 5000, 100, round_base=0)
    res = await scripts.commit_rounds(
        keys=keys.commit_rounds_keys("t1"), args=commit_rounds_args(header, [(entry, 1)])
    )
    assert res[4] == 1  # became ready: the commit recorded rr/rt
    rr, rt = (int(x) for x in await redis.hmget(keys.learner_state("t1"), ["rr", "rt"]))
    sec, usec = await redis.time()
    engine = MetaEngine(MetaStore(redis, keys, scripts))
    # A forged trigger: ts 0 would make the delay ~56 years, a huge round would pin lastTrigger.
    result = await engine.run_all("t1", Trigger(2**63, 0))
    sec2, usec2 = await redis.time()
    assert 0 <= result["delay_ms"] <= sec2 * 1000 + usec2 // 1000 - rt + 1000
    doc = unpack(await redis.hget(keys.learner_meta("t1"), "s"))
    assert doc["lastTrigger"]["round"] == rr and doc["lastTrigger"]["ts"] == rt
    assert (await fleet_stats(redis, keys)).get("delayMaxMs", 0) < 60_000
    assert sec * 1000 + usec // 1000 >= rt


async def test_a_trigger_without_a_readiness_record_counts_nothing(redis, scripts, keys):
    await make(redis, scripts, keys, "t2")  # never became ready: no rr/rt
    result = await MetaEngine(MetaStore(redis, keys, scripts)).run_all("t2", Trigger(5, 0))
    assert result["ran"] == [1, 2, 3, 4] and "delay_ms" not in result
    events = [f for _, f in await meta_events(redis, keys) if f.get("type") == "completed"]
    assert len(events) == 1 and "delay_ms" not in events[0]


async def test_cohort_boost_walks_every_shard_and_stats_sum_the_shards(redis, scripts, keys):
    learners = [f"k{i}" for i in range(40)]
    for learner in learners:
        await make(redis, scripts, keys, learner)
    assert len({keys.shard_of(learner) for learner in learners}) > 8  # spread over the shards
    engine = MetaEngine(MetaStore(redis, keys, scripts))
    result = await engine.boost_cohort(0.1, 0.05)
    assert result["count"] == 40 and result["failedCount"] == 0
    for learner in learners:
        assert decode(await redis.hget(keys.learner_state(learner), "s")).retention > 1.0
    # Each boost is counted in its learner's shard; the fleet's figure is their sum.
    for shard in keys.all_shards():
        mine = sum(1 for learner in learners if keys.shard_of(learner) == shard)
        assert int(await redis.hget(keys.meta_stats(shard), "boosts") or 0) == mine
    await engine.boost("k0", 0.1, 0.0)
    assert (await engine.stats())["boosts"] == 41


def test_the_fleets_last_delay_is_the_newest_shards() -> None:
    parts = [
        {"completed": "2", "delayCount": "2", "delaySumMs": "30", "delayMaxMs": "20"},
        {
            "completed": "1",
            "delayCount": "1",
            "delaySumMs": "7",
            "delayMaxMs": "7",
            "delayLastMs": "7",
            "delayLastAt": "2000",
        },
        {
            "delayCount": "1",
            "delaySumMs": "9",
            "delayMaxMs": "9",
            "delayLastMs": "9",
            "delayLastAt": "1000",
        },
        {},
    ]
    assert merge_stats(parts) == {
        "completed": 3,
        "delayCount": 4,
        "delaySumMs": 46,
        "delayMaxMs": 20,
        "delayLastMs": 7,
    }
