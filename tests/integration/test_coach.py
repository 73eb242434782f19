"""The coach against real redis, training, meta and coach processes: readiness and exactly-once
meta, boost round ids, live fast-lane changes that survive a restart, paused meta, bad input.

Backends: every test but the bad-input one runs on the single Redis and on the 3-master Redis
Cluster (coaching and boosts over shards on several masters); bad input runs on the single Redis
only, to keep the suite's time (its refusals touch no Redis)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from harness.polling import wait_for
from shared.fleet_totals import rounds_total
from shared.keys import round_id_base

pytestmark = [pytest.mark.integration, pytest.mark.backends("single", "cluster")]

COACH = "/api/v1/auto-coach"


def status(fleet, name: str = "coach") -> dict[str, Any]:
    code, body = fleet[name].get(f"{COACH}/status")
    assert code == 200, body
    return body["status"]


def create_learners(fleet, ids: list[str], *, active: bool = True) -> None:
    for learner in ids:
        code, body = fleet["training"].post("/api/v1/learners", {"id": learner, "active": active})
        assert code == 201, body


async def meta_events(redis, keys) -> list[dict[str, str]]:
    """Every shard's meta stream, concatenated (the order across shards is not kept)."""
    events: list[dict[str, str]] = []
    for shard in keys.all_shards():
        events += [fields for _, fields in await redis.xrange(keys.stream_meta(shard))]
    return events


async def meta_pending(redis, keys) -> int:
    """Entries of the coach's groups read and not acknowledged, over every shard."""
    total = 0
    for shard in keys.all_shards():
        if await redis.exists(keys.stream_meta(shard)):
            groups = {g["name"] for g in await redis.xinfo_groups(keys.stream_meta(shard))}
            if "coach" in groups:
                total += (await redis.xpending(keys.stream_meta(shard), "coach"))["pending"]
    return total


async def test_fast_lane_learners_reach_readiness_and_meta_runs_once_each(fleet, redis, keys):
    fleet.start("training", "meta", "coach")
    learners = [f"r{i}" for i in range(6)]
    create_learners(fleet, learners)
    code, body = fleet["coach"].post(
        f"{COACH}/fast-lane",
        {"enable": True, "weight": 2, "intervalMs": 100, "learners": learners[:2]},
    )
    assert code == 200, body
    code, body = fleet["coach"].post(f"{COACH}/start")
    assert code == 200 and body["status"]["active"] is True

    done = wait_for(
        lambda: (s := status(fleet))["learnersReady"] == 6 and s["metaTrigger"]["count"] == 6 and s,
        timeout_s=60,
    )
    assert done["metaTriggered"] is True
    assert done["metaTrigger"]["delayMs"]["p99"] is not None
    assert done["roundsRun"] > 0 and done["learnersNeedingCoaching"] == 0
    await asyncio.sleep(1.0)  # more ticks: nobody is triggered twice
    assert status(fleet)["metaTrigger"]["count"] == 6

    events = await meta_events(redis, keys)
    ready = Counter(e["learner"] for e in events if e["type"] == "ready")
    completed = Counter(e["learner"] for e in events if e["type"] == "completed")
    assert ready == Counter(dict.fromkeys(learners, 1))
    assert completed == Counter(dict.fromkeys(learners, 1))
    assert set(await redis.hkeys(keys.coach_meta_delay_by_learner)) == set(learners)
    # Every trigger was acknowledged.
    assert await meta_pending(redis, keys) == 0


async def test_boost_returns_exactly_the_rounds_it_ran(fleet, redis, keys):
    fleet.start("training", "coach")
    create_learners(fleet, ["b1"])
    create_learners(fleet, ["idle"], active=False)
    before = await rounds_total(redis, keys)
    base = round_id_base(keys.shard_of("b1")) + int(
        await redis.get(keys.rounds_seq(keys.shard_of("b1"))) or 0
    )

    code, body = fleet["coach"].post(
        f"{COACH}/boost", {"learner": "b1", "rounds": 7, "batchSize": 3}
    )
    assert code == 200, body
    ids = [r["round"] for r in body["results"]]
    assert body["boosted"] == 7 and body["batchSize"] == 3
    # Consecutive ids of the learner's shard, above what the shard had given out before (the
    # coach's own loop may commit rounds of that shard in between, so not necessarily base + 1).
    assert ids == list(range(ids[0], ids[0] + 7)) and ids[0] > base
    assert all(r["learner"] == "b1" and r["trained"] for r in body["results"])
    assert await rounds_total(redis, keys) == before + 7

    code, body = fleet["coach"].post(f"{COACH}/hyper-boost", {"learner": "b1", "rounds": 13})
    assert code == 200, body
    assert body["hyperBoosted"] == 13 and body["totalBatches"] == 3
    assert len({r["round"] for r in body["results"]}) == 13

    code, body = fleet["coach"].post(f"{COACH}/boost", {"learner": "idle"})
    assert code == 409 and body["error"]["code"] == "training_not_started"
    code, body = fleet["coach"].post(f"{COACH}/boost", {"learner": "nobody"})
    assert code == 404 and body["error"]["code"] == "learner_not_found"
    assert await rounds_total(redis, keys) == before + 20

    for path in ("boost", "hyper-boost"):
        code, body = fleet["coach"].get(f"{COACH}/{path}")
        assert code == 405 and "POST" in body["error"]["message"]


async def test_fast_lane_changes_apply_at_once_and_survive_a_restart(fleet, redis, keys):
    fleet.start("training", "coach")
    create_learners(fleet, ["a", "b", "c"])
    change = {
        "enable": True,
        "weight": 5,
        "intervalMs": 150,
        "microBatchesPerTick": 2,
        "batchSize": 3,
        "learners": {"add": ["a", "b"]},
    }
    code, body = fleet["coach"].post(f"{COACH}/fast-lane", change)
    assert code == 200, body
    expected = {
        "enabled": True,
        "weight": 5,
        "intervalMs": 150,
        "microBatchesPerTick": 2,
        "batchSize": 3,
    }
    fast = status(fleet)["fastLane"]
    assert {k: fast[k] for k in expected} == expected and fast["pinned"] == 2
    assert body["members"]["pinned"] == ["a", "b"]
    assert (await redis.xrange(keys.stream_system))[-1][1]["type"] == "settings_changed"

    fleet["coach"].post(f"{COACH}/start")
    before = wait_for(lambda: (s := status(fleet))["roundsRun"] > 0 and s)

    # A GET only reads, whatever its query says.
    code, _ = fleet["coach"].get(f"{COACH}/fast-lane?weight=9&enable=false")
    assert code == 200 and status(fleet)["fastLane"]["weight"] == 5

    fleet["coach"].stop()
    fleet.start("coach")
    after = status(fleet)
    assert {k: after["fastLane"][k] for k in expected} == expected
    assert fleet["coach"].get(f"{COACH}/fast-lane")[1]["members"]["pinned"] == ["a", "b"]
    assert after["active"] is True  # it was active: it resumes on its own
    assert after["roundsRun"] >= before["roundsRun"]  # counters are not reset
    wait_for(lambda: status(fleet)["roundsRun"] > after["roundsRun"])

    code, body = fleet["coach"].post(
        f"{COACH}/fast-lane", {"enable": False, "learners": {"remove": ["a"]}}
    )
    assert code == 200 and body["fastLane"]["enabled"] is False
    assert body["members"]["pinned"] == ["b"] and body["live"]["weight"] == 1


async def test_paused_meta_keeps_triggers_queued_until_resumed(fleet, redis, keys):
    fleet.start("training", "meta", "coach")
    create_learners(fleet, ["p1", "p2"])
    assert fleet["meta"].post("/api/v4/meta-learning/pause")[0] == 200
    fleet["coach"].post(f"{COACH}/fast-lane", {"intervalMs": 100})
    fleet["coach"].post(f"{COACH}/start")
    wait_for(lambda: status(fleet)["learnersReady"] == 2, timeout_s=60)
    wait_for(lambda: "paused" in (status(fleet)["lastMetaAction"] or ""), timeout_s=10)
    assert status(fleet)["metaTrigger"]["count"] == 0
    assert await meta_pending(redis, keys) == 2

    assert fleet["meta"].post("/api/v4/meta-learning/resume")[0] == 200
    wait_for(lambda: status(fleet)["metaTrigger"]["count"] == 2, timeout_s=20)
    assert await meta_pending(redis, keys) == 0


async def test_a_batch_meta_refuses_is_served_one_learner_at_a_time(fleet, redis, keys):
    # Three readiness events read together: one learner meta can run, one it does not know and
    # one id it refuses outright (422 for the whole batch). The coach falls back to run-all per
    # learner, so the good one is served and only the other two are given up.
    fleet.start("training", "meta")
    create_learners(fleet, ["good"])
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        for learner in ("good", "ghost", "bad id!"):
            pipe.xadd(
                keys.stream_meta(keys.shard_of(learner)),
                {"type": "ready", "learner": learner, "round": 1, "ts": now_ms},
            )
        await pipe.execute()
    fleet.start("coach")  # its group starts at 0: all three come in its first read
    done = wait_for(lambda: (m := status(fleet)["metaTrigger"])["failures"] == 2 and m)
    assert done["count"] == 1
    completed = [e["learner"] for e in await meta_events(redis, keys) if e["type"] == "completed"]
    assert completed == ["good"]
    assert await meta_pending(redis, keys) == 0


BAD_SETTINGS = [
    {"batchSize": -1},
    {"batchSize": 0.5},
    {"microBatchesPerTick": 1000},
    {"maxRoundsPerCycle": 10**9},
    {"intervalMs": "NaN"},
    {"minAvgMastery": "NaN"},
    {"minAvgMastery": float("nan")},
    {"aggressiveMultiplier": float("inf")},
    {"unknownKey": True},
    {"fastLane": {"weight": 0}},
    {"coverageTarget": 1.5},
    {"coverageTarget": -0.1},
    {"maxLearnersPerTick": 0},
    [1, 2, 3],
]
BAD_FAST_LANE = [
    {"weight": -2},
    {"weight": 2.5},
    {"intervalMs": 0},
    {"batchSize": 0.5},
    {"microBatchesPerTick": -1},
    {"enable": "false"},
    {"targets": ["meta-learning"]},
    {"learners": ["ok", "bad id"]},
    {"learners": ["ghost"], "weight": 9},  # unknown learner: refused, weight not applied
]
BAD_BOOST = [
    {"rounds": 1000},
    {"rounds": -5},
    {"rounds": "NaN"},
    {"batchSize": -1},
    {"batchSize": 0.5},
    {"learner": "../etc"},
    {"extra": 1},
]


@pytest.mark.backends("single")  # input checks: nothing Redis-specific
async def test_bad_inputs_get_4xx_and_change_nothing(fleet, redis, keys):
    fleet.start("training", "coach")
    create_learners(fleet, ["x"])
    settings_before = fleet["coach"].get(f"{COACH}/settings")[1]["settings"]
    fast_before = status(fleet)["fastLane"]
    rounds_before = await rounds_total(redis, keys)
    events_before = await redis.xlen(keys.stream_system)

    for path, bodies in (("settings", BAD_SETTINGS), ("fast-lane", BAD_FAST_LANE)):
        for bad in bodies:
            code, body = fleet["coach"].post(f"{COACH}/{path}", bad)
            assert 400 <= code < 500, (path, bad, code, body)
            assert body["ok"] is False and body["error"]["code"], body
    for path in ("boost", "hyper-boost"):
        for bad in [*BAD_BOOST, {"rounds": 51}]:
            code, body = fleet["coach"].post(f"{COACH}/{path}", bad)
            assert 400 <= code < 500, (path, bad, code, body)
    code, _ = fleet["coach"].post(f"{COACH}/start", {"now": True})
    assert code == 422

    assert fleet["coach"].get(f"{COACH}/settings")[1]["settings"] == settings_before
    assert status(fleet)["fastLane"] == fast_before
    assert status(fleet)["active"] is False
    assert await rounds_total(redis, keys) == rounds_before
    assert await redis.xlen(keys.stream_system) == events_before

    # A valid change still works and reports what changed.
    code, body = fleet["coach"].post(
        f"{COACH}/settings",
        {"maxRoundsPerCycle": 6, "fastLane": {"batchSize": 8}, "coverageTarget": 0.95},
    )
    assert code == 200 and body["changed"] == [
        "coverageTarget",
        "fastLane.batchSize",
        "maxRoundsPerCycle",
    ]
    assert await redis.hget(keys.coach_settings, "maxRoundsPerCycle") == "6"
