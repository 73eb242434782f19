"""The layout migration against a real redis-server: a Redis filled by the unsharded fleet's own
scripts (tests/unit/legacy/*.lua are the scripts of the last unsharded release, kept verbatim) and
raw commands for what other services wrote, migrated into shards; then every learner's state,
history, meta and coach entries, the counters, the reports and meta figures and every consumer
group's unread events are checked. A migration stopped half-way (at several points in-process,
and by SIGKILL of a real `python -m shared.migrate_layout`) and run again gives the same result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from shared import fleet_totals
from shared.commit_rounds import CommitHeader, commit_rounds_args
from shared.keys import ROUND_ID_STRIDE, Keys, LegacyKeys
from shared.learner_state import LearnerState, encode
from shared.migrate_layout import (
    LegacyLayoutFound,
    Migration,
    legacy_keys_found,
    refuse_legacy_layout,
)
from shared.scripts import Scripts

LEGACY = Path(__file__).parent / "legacy"
REGIONS = ["eu", "us", "ap"]
N = 60


class Legacy:
    """The unsharded fleet's writes: its create and commit scripts, with its key names."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.k = LegacyKeys(prefix)
        self.create = redis.register_script((LEGACY / "create_learner.lua").read_text())
        self.commit_script = redis.register_script((LEGACY / "commit_rounds.lua").read_text())

    async def create_learner(self, learner: str, region: str, active: bool = True) -> None:
        state = LearnerState(id=learner, seed=7, region=region, created=1.0, active=active)
        k = self.k
        await self.create(
            keys=[
                k.learner_state(learner),
                k.learners_index,
                k.learners_seq,
                k.learners_regions,
                k.coach("queue"),
            ],
            args=[learner, encode(state), region, 1 if active else 0],
        )

    async def commit(
        self, learner: str, version: int, avg: float, n: int = 1, idem: str = ""
    ) -> list[Any]:
        """The old script's ARGV: 14 fixed arguments (thresholds as defaults it read the coach
        settings over), then the rounds; round ids from the fleet-wide counter."""
        k = self.k
        region = REGIONS[int(learner[1:]) % 3]  # as created (a learner's region never changes)
        state = LearnerState(id=learner, seed=7, region=region, active=True, rounds=version)
        keys = [
            k.learner_state(learner),
            k.learner_history(learner),
            k.rounds_seq,
            k.stream_rounds,
            k.coach("settings"),
            k.coach("queue"),
            k.coach("ready"),
            k.stream_meta,
        ]
        if idem:
            keys.append(f"{k.prefix}:{{learner:{learner}}}:idem:{idem}")
        header = CommitHeader(
            str(version), encode(state), learner, region, avg, 0 if avg > 80 else 5, 5000, 100,
            round_base=0,
        )  # fmt: skip
        entry = orjson.dumps({"trained": ["dsa"], "n": version}).decode()
        args = commit_rounds_args(header, [(entry, 2)] * n, None, idem or None)[:14]
        args += [x for _ in range(n) for x in (entry, 2)]
        return await self.commit_script(keys=keys, args=args)


async def build_legacy(redis: Redis, prefix: str, n: int = N) -> dict[str, Any]:
    """A legacy fleet: learners (some with rounds, some ready, one in the fast lane), meta state,
    an idempotency record, coach keys before and after the tag, meta and reports figures, and
    streams whose consumer groups have read, acknowledged or left pending various entries."""
    old = Legacy(redis, prefix)
    k = old.k
    learners = [f"m{i}" for i in range(n)]
    for i, learner in enumerate(learners):
        await old.create_learner(learner, REGIONS[i % 3], active=i % 10 != 9)
    for i, learner in enumerate(learners[:40]):
        for version in range(1, 1 + i % 4):
            res = await old.commit(learner, version, 90 if i % 5 == 0 else 40, n=2)
            assert res[0] == 1
    await old.commit("m1", 2, 40, idem="retry-key-1")  # m1 had one commit: version 2
    await redis.sadd(k.coach("fastlane"), "m2")
    await redis.zadd(k.coach("coached"), {"m3": 1234, "m4": 5678})
    await redis.hset(k.learner_meta("m5"), mapping={"v": 3, "s": '{"p": 1}'})
    await redis.lpush(k.learner_meta_log("m5"), '{"e": 1}', '{"e": 2}')
    # Coach keys older still (before the tag): settings merge under the tagged ones.
    await redis.hset(k.coach("settings"), mapping={"minAvgMastery": "70"})
    await redis.hset(
        k.coach_untagged("settings"), mapping={"minAvgMastery": "99", "batchSize": "7"}
    )
    await redis.set(k.coach("fence"), 41)
    await redis.hset(k.meta_stats, mapping={"completed": 12, "delaySumMs": 3400})
    await redis.hset(
        k.reports("totals"),
        mapping={
            "events": 30, "events:rounds": 20, "events:meta": 6, "events:system": 4, "rounds": 20,
            "meta:ready": 6, "restarts:coach": 2, "last_event_ms": 1700000000000,
        },
    )  # fmt: skip
    await redis.hset(k.reports("min:29000000"), mapping={"rounds": 5})
    await redis.expire(k.reports("min:29000000"), 3600)
    await redis.hset(k.reports("svc:last"), mapping={"coach": "up:1"})
    await redis.zadd(k.reports("svc:coach"), {"1-0:up": 1})
    for i in range(4):
        await redis.xadd(k.stream_system, {"type": "start", "service": "web", "ts": i})
    # Consumer groups as the old fleet left them: reports read 30 rounds events, acknowledged
    # the first 25 (5 pending); the coach read the meta stream's first 2 events and acknowledged
    # one; reports never read the meta stream; the system stream is fully processed.
    await redis.xgroup_create(k.stream_rounds, "reports", id="0")
    read = await redis.xreadgroup("reports", "r1", {k.stream_rounds: ">"}, count=30)
    ids = [entry_id for entry_id, _ in read[0][1]]
    await redis.xack(k.stream_rounds, "reports", *ids[:25])
    await redis.xgroup_create(k.stream_meta, "coach", id="0")
    await redis.xgroup_create(k.stream_meta, "reports", id="0")
    meta_read = await redis.xreadgroup("coach", "c1", {k.stream_meta: ">"}, count=2)
    meta_ids = [entry_id for entry_id, _ in meta_read[0][1]]
    await redis.xack(k.stream_meta, "coach", meta_ids[0])
    await redis.xgroup_create(k.stream_system, "reports", id="0")
    sys_read = await redis.xreadgroup("reports", "r1", {k.stream_system: ">"})
    await redis.xack(k.stream_system, "reports", *[i for i, _ in sys_read[0][1]])
    await redis.xadd(k.stream_system, {"type": "stop", "service": "web", "ts": 9})  # unread
    return {"learners": learners, "round_ids": ids, "meta_ids": meta_ids}


async def legacy_view(redis: Redis, prefix: str, learners: list[str]) -> dict[str, Any]:
    """Everything about each learner, and the counters, as the old layout holds them."""
    k = LegacyKeys(prefix)
    out: dict[str, Any] = {}
    for learner in learners:
        out[learner] = {
            "state": await redis.hgetall(k.learner_state(learner)),
            "history": await redis.lrange(k.learner_history(learner), 0, -1),
            "meta": await redis.hgetall(k.learner_meta(learner)),
            "log": await redis.lrange(k.learner_meta_log(learner), 0, -1),
            "queue": await redis.zscore(k.coach("queue"), learner),
            "ready": await redis.zscore(k.coach("ready"), learner),
            "coached": await redis.zscore(k.coach("coached"), learner),
            "fast": await redis.sismember(k.coach("fastlane"), learner),
        }
    out["_rounds"] = int(await redis.get(k.rounds_seq))
    out["_regions"] = await redis.hgetall(k.learners_regions)
    out["_stream"] = {
        "rounds": await redis.xrange(k.stream_rounds),
        "meta": await redis.xrange(k.stream_meta),
    }
    return out


async def new_view(redis: Redis, keys: Keys, learners: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for learner in learners:
        s = keys.shard_of(learner)
        out[learner] = {
            "state": await redis.hgetall(keys.learner_state(learner)),
            "history": await redis.lrange(keys.learner_history_list(learner), 0, -1),
            "meta": await redis.hgetall(keys.learner_meta(learner)),
            "log": await redis.lrange(keys.learner_meta_log(learner), 0, -1),
            "queue": await redis.zscore(keys.coach_queue(s), learner),
            "ready": await redis.zscore(keys.coach_ready(s), learner),
            "coached": await redis.zscore(keys.coach_coached(s), learner),
            "fast": await redis.sismember(keys.coach_fastlane(s), learner),
        }
    return out


async def check_migrated(
    redis: Redis, keys: Keys, before: dict[str, Any], built: dict[str, Any]
) -> None:
    learners = built["learners"]
    after = await new_view(redis, keys, learners)
    for learner in learners:
        assert after[learner] == before[learner], learner
    totals = await fleet_totals.read_totals(redis, keys)
    assert totals.learners == len(learners)
    assert totals.regions == {r: int(c) for r, c in before["_regions"].items()}
    # Shard 0's counter took the old fleet-wide one: the rounds total is unchanged.
    assert totals.rounds == before["_rounds"]
    assert await redis.get(keys.rounds_seq(0)) == str(before["_rounds"])
    # Each shard's index lists its learners in their old creation order.
    for shard in keys.all_shards():
        listed = await redis.zrange(keys.learners_index(shard), 0, -1)
        assert listed == [x for x in learners if keys.shard_of(x) == shard]
    # Coach settings: the tagged value wins, fields only the untagged hash had are kept.
    assert await redis.hgetall(keys.coach_settings) == {"minAvgMastery": "70", "batchSize": "7"}
    assert {await redis.get(keys.coach_fence(s)) for s in keys.all_shards()} == {"41"}
    assert await redis.hgetall(keys.meta_stats(0)) == {"completed": "12", "delaySumMs": "3400"}
    assert await redis.hgetall(keys.reports_totals(0)) == {
        "events": "26", "events:rounds": "20", "events:meta": "6", "rounds": "20",
        "meta:ready": "6", "last_event_ms": "1700000000000",
    }  # fmt: skip
    assert await redis.hgetall(keys.reports_system_totals) == {"events": "4", "restarts:coach": "2"}
    assert await redis.hgetall(keys.reports_minute(0, 29000000)) == {"rounds": "5"}
    assert 0 < await redis.ttl(keys.reports_minute(0, 29000000)) <= 3600
    assert await redis.hgetall(keys.reports_service_last) == {"coach": "up:1"}
    assert await redis.zrange(keys.reports_service("coach"), 0, -1) == ["1-0:up"]
    # The idempotency record answers a retry: nothing is committed again.
    record = await redis.get(keys.learner_idempotency("m1", "retry-key-1"))
    assert record is not None and 0 < await redis.pttl(
        keys.learner_idempotency("m1", "retry-key-1")
    )
    # Nothing of the old layout is left, and the services would start.
    assert await legacy_keys_found(redis, keys) == []
    await refuse_legacy_layout(redis, keys)
    assert await redis.hget(keys.fleet_layout, "version") == "2"
    assert await redis.hkeys(keys.fleet_layout) == ["version"]
    await check_streams(redis, keys, before, built)


async def check_streams(
    redis: Redis, keys: Keys, before: dict[str, Any], built: dict[str, Any]
) -> None:
    """Every group sees exactly what it had not processed: reports' 5 pending rounds events are
    pending, its unread ones are new, the 25 it acknowledged are gone; the coach's one pending
    meta event is pending, the rest new; reports' meta group gets every meta event."""
    rounds_ids = [i for i, _ in before["_stream"]["rounds"]]
    acked, pending = set(built["round_ids"][:25]), set(built["round_ids"][25:])
    copied: list[str] = []
    pending_new: list[str] = []
    fresh: list[str] = []
    fields_by_id = dict(before["_stream"]["rounds"])
    for shard in keys.all_shards():
        stream = keys.stream_rounds(shard)
        for entry_id, fields in await redis.xrange(stream):
            assert keys.shard_of(fields["learner"]) == shard
            assert fields == fields_by_id[entry_id]  # the same event, with its id
            copied.append(entry_id)
        pel = await redis.xpending_range(stream, "reports", min="-", max="+", count=1000)
        pending_new += [r["message_id"] for r in pel]
        got = await redis.xreadgroup("reports", "new", {stream: ">"}, count=10_000)
        fresh += [i for _, entries in got or [] for i, _ in entries]
    assert sorted(copied) == sorted(i for i in rounds_ids if i not in acked)
    assert set(pending_new) == pending
    assert sorted(fresh) == sorted(set(rounds_ids) - acked - pending)
    meta_ids = [i for i, _ in before["_stream"]["meta"]]
    coach_pending, coach_fresh, reports_fresh = [], [], []
    for shard in keys.all_shards():
        stream = keys.stream_meta(shard)
        pel = await redis.xpending_range(stream, "coach", min="-", max="+", count=1000)
        coach_pending += [r["message_id"] for r in pel]
        got = await redis.xreadgroup("coach", "new", {stream: ">"}, count=10_000)
        coach_fresh += [i for _, entries in got or [] for i, _ in entries]
        got = await redis.xreadgroup("reports", "new", {stream: ">"}, count=10_000)
        reports_fresh += [i for _, entries in got or [] for i, _ in entries]
    assert coach_pending == [built["meta_ids"][1]]
    assert sorted(coach_fresh) == sorted(meta_ids[2:])
    assert sorted(reports_fresh) == sorted(meta_ids)
    # The system stream: what the orchestrator wrote meanwhile, then the one unread old event.
    system = [fields for _, fields in await redis.xrange(keys.stream_system)]
    assert system == [
        {"type": "start", "service": "orchestrator", "ts": "1"},
        {"type": "stop", "service": "web", "ts": "9"},
    ]


@pytest.fixture
def new_keys(prefix: str) -> Keys:
    return Keys(prefix)


async def test_a_legacy_fleet_migrates_whole_and_a_second_run_changes_nothing(
    redis: Redis, scripts: Scripts, prefix: str, new_keys: Keys
) -> None:
    built = await build_legacy(redis, prefix)
    before = await legacy_view(redis, prefix, built["learners"])
    await orchestrator_started(redis, new_keys)
    with pytest.raises(LegacyLayoutFound, match="tooloo-migrate"):
        await refuse_legacy_layout(redis, new_keys)
    report = await Migration(redis, new_keys, batch=7).run()
    assert report.ran and report.learners == N and report.idempotency_records == 1
    await check_migrated(redis, new_keys, before, built)
    # Run again: nothing to do, nothing written.
    snapshot = await dump_all(redis, prefix)
    assert not (await Migration(redis, new_keys).run()).ran
    assert await dump_all(redis, prefix) == snapshot
    # The learners train on: ids continue above every id they had, none reissued.
    for learner in ("m0", "m5", "m39"):
        version = int(await redis.hget(new_keys.learner_state(learner), "v"))
        header = CommitHeader(
            str(version), encode(LearnerState(id=learner, seed=7, active=True)), learner, "eu",
            10, 9, 5000, 100, round_base=new_keys.shard_of(learner) * ROUND_ID_STRIDE,
        )  # fmt: skip
        res = await scripts.commit_rounds(
            keys=new_keys.commit_rounds_keys(learner),
            args=commit_rounds_args(header, [('{"x": 1}', 1)]),
        )
        assert res[0] == 1
        assert res[2] > before["_rounds"]
    # A retry of a request made before the migration is answered from its record.
    header = CommitHeader(
        "1", encode(LearnerState(id="m1", seed=7, active=True)), "m1", "eu", 10, 9, 5000, 100,
        round_base=new_keys.shard_of("m1") * ROUND_ID_STRIDE,
    )  # fmt: skip
    res = await scripts.commit_rounds(
        keys=new_keys.commit_rounds_keys("m1", "retry-key-1"),
        args=commit_rounds_args(header, [('{"x": 1}', 1)], None, "any-hash"),
    )
    assert res[0] == -2  # the key's record is there (a different request hash here)


async def orchestrator_started(redis: Redis, keys: Keys) -> None:
    """The orchestrator records its start in the (new) system stream before it migrates."""
    await redis.xadd(keys.stream_system, {"type": "start", "service": "orchestrator", "ts": 1})


class Interrupted(Exception):
    pass


class StopAt(Migration):
    """A migration that dies at one point, as a kill would (nothing after it runs)."""

    def __init__(self, *args: Any, point: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.point = point
        self.batches = 0

        async def stop_after(step: str) -> None:
            if step == point:
                raise Interrupted(step)

        self.after_step = stop_after

    async def _move_learners(self, learners: list[str]) -> None:
        await super()._move_learners(learners)
        self.batches += 1
        if self.point == "learners:3" and self.batches == 3:
            raise Interrupted("learners")

    async def _deliver(self, stream: str, group: str, count: int) -> None:
        await super()._deliver(stream, group, count)
        if self.point == "deliver" and count:
            raise Interrupted("deliver")

    async def _system_stream(self) -> None:
        if self.point == "system":  # after the copy, before the step is marked done
            await super()._system_stream()
            raise Interrupted("system")
        await super()._system_stream()


@pytest.mark.parametrize(
    "point", ["learners:3", "counters", "reports", "deliver", "stream_meta", "system"]
)
async def test_a_migration_stopped_half_way_completes_when_run_again(
    redis: Redis, prefix: str, new_keys: Keys, point: str
) -> None:
    built = await build_legacy(redis, prefix)
    before = await legacy_view(redis, prefix, built["learners"])
    await orchestrator_started(redis, new_keys)
    with pytest.raises(Interrupted):
        await StopAt(redis, new_keys, batch=7, point=point).run()
    assert await redis.hget(new_keys.fleet_layout, "migrating") is not None
    with pytest.raises(LegacyLayoutFound):  # the services still refuse
        await refuse_legacy_layout(redis, new_keys)
    report = await Migration(redis, new_keys, batch=7).run()
    assert report.ran
    await check_migrated(redis, new_keys, before, built)


async def dump_all(redis: Redis, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        out[key] = (await redis.type(key), await redis.dump(key))
    return out
