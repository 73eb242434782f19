"""The coach tick: the pure plan and summary, and whole ticks in-process against a real
redis-server with a fake training (no HTTP)."""

from __future__ import annotations

from typing import Any

import orjson

from services.coach.loop import CoachLoop
from services.coach.scheduler import Pick
from services.coach.settings_store import CoachSettings, merge
from services.coach.store import CoachStore, outage_field
from services.coach.tick import TickPlan, TickSize, plan, summarize, tick_size
from services.coach.training_api import BatchOutcome, outcome_of
from shared.keys import Keys
from shared.learner_state import LearnerState, encode
from shared.shards import AllShards


def no_average(_: str) -> float | None:
    return None


def rounds_answer(learners: list[str], n: int, avg: float, ready: set[str] = frozenset()):
    return {
        "rounds": [
            {"learner": x, "round": i, "avg": avg, "became_ready": x in ready and i == n - 1}
            for x in learners
            for i in range(n)
        ],
        "errors": [],
    }


class FakeTraining:
    """Answers every batch as training would, or fails every call while `down`."""

    def __init__(self, avg: float = 60.0) -> None:
        self.avg = avg
        self.down = False
        self.calls: list[tuple[list[str], int]] = []
        self.fences: list[dict[str, int] | None] = []

    async def run_batch(
        self, learners: list[str], rounds_per_learner: int, fences: dict[str, int] | None = None
    ) -> BatchOutcome:
        self.calls.append((learners, rounds_per_learner))
        self.fences.append(fences)
        if self.down:
            return outcome_of(learners, 503, {"error": {"code": "busy", "message": "later"}})
        return outcome_of(learners, 200, rounds_answer(learners, rounds_per_learner, self.avg))


class RecordingBacklog:
    def __init__(self) -> None:
        self.waits: list[tuple[int, float]] = []

    async def wait_backlog_below(self, limit: int, timeout_s: float) -> bool:
        self.waits.append((limit, timeout_s))
        return True


async def create(scripts, keys, learner: str) -> None:
    state = LearnerState(id=learner, seed=1, region="eu", created=1.0, active=True)
    await scripts.create_learner(
        keys=keys.create_learner_keys(learner), args=[learner, encode(state), "eu", 1]
    )


# ---- plan ---------------------------------------------------------------------------------------
def test_plan_gives_newcomers_and_laggards_aggressive_rounds():
    settings = CoachSettings()  # maxRoundsPerCycle 4, aggressive ×2 below 50, batch size 4
    picks = [Pick("new", 0, False), Pick("low", 0, True), Pick("high", 0, False)]
    averages = {"low": 30.0, "high": 80.0}
    got = plan(picks, settings, averages.get)
    assert got.aggressive == 2
    assert sorted(x for call in got.calls for x in call) == [("high", 4), ("low", 8), ("new", 8)]
    assert all(len({r for _, r in call}) == 1 for call in got.calls)


def test_plan_cuts_calls_by_the_live_batch_size_and_honours_hyper_mode():
    settings = merge(CoachSettings(), {"hyperMode": True, "fastLane": {"batchSize": 2}})
    picks = [Pick(f"l{i}", 0, False) for i in range(5)]
    got = plan(picks, settings, lambda _: 90.0)
    assert [len(call) for call in got.calls] == [2, 2, 1]
    assert {r for call in got.calls for _, r in call} == {8}
    assert plan([], settings, no_average) == TickPlan([], 0)


# ---- summarize ----------------------------------------------------------------------------------
def summary_of(picks, tick_plan, outcomes, *, outage=None, averages=None, settings=None):
    return summarize(
        picks,
        tick_plan,
        outcomes,
        settings=settings or CoachSettings(),
        promoted=1,
        outage=outage,
        at_ms=1_000_000,
        tick_ms=12.34,
        average_of=(averages or {}).get,
    )


def test_summary_of_an_empty_queue():
    result = summary_of([], TickPlan([], 0), [])
    assert result.summary == {"needing": 0, "promoted": 1, "rounds": 0}
    assert result.action == "no learners need coaching"
    assert (result.rounds, result.coached, result.advanced) == (0, [], [])
    assert result.outage_started is None and not result.outage_over


def test_summary_counts_rounds_errors_and_failed_calls():
    picks = [Pick(x, 0, False) for x in ("a", "b", "c", "d")]
    tick_plan = TickPlan([[("a", 2), ("b", 2)], [("c", 2)], [("d", 2)]], aggressive=1)
    ok = outcome_of(["a", "b"], 200, rounds_answer(["a", "b"], 2, 70.0, ready={"b"}))
    refused = outcome_of(["c"], 404, {"error": {"code": "learner_not_found", "message": "gone"}})
    down = BatchOutcome(["d"], upstream_error="training timed out")
    result = summary_of(picks, tick_plan, [ok, refused, down], averages={"c": 10.0})
    assert result.summary == {
        "needing": 4,
        "coached": 2,
        "rounds": 4,
        "calls": 3,
        "failedCalls": 1,
        "learnerErrors": 1,
        "becameReady": 1,
        "promoted": 1,
        "avgMastery": 70.0,
        "tickMs": 12.3,
    }
    assert result.action == "micro-batch 2 calls, 4 rounds for 2 learners (tick +4 aggressive)"
    assert result.coached == ["a", "b"]
    # The learners training answered for move on; the one whose call failed keeps its turn.
    assert [p.learner for p in result.advanced] == ["a", "b", "c"]
    assert (result.rounds, result.learner_errors, result.failed_calls) == (4, 1, 1)
    assert result.averages == {"a": 70.0, "b": 70.0}
    assert result.outage_started == "training timed out"  # no outage was recorded before


def test_summary_averages_mix_fresh_and_known_values():
    picks = [Pick("a", 0, False), Pick("b", 0, False)]
    answer = {"rounds": [{"learner": "a", "avg": 80}, {"learner": "b"}], "errors": []}
    result = summary_of(
        picks,
        TickPlan([[("a", 1), ("b", 1)]], 0),
        [outcome_of(["a", "b"], 200, answer)],
        averages={"a": 10.0, "b": 60.0},
    )
    assert result.summary["avgMastery"] == 70.0  # a's fresh 80, b's last known 60
    assert result.averages == {"a": 80.0}


def test_summary_of_an_outage_and_of_its_end():
    picks = [Pick("a", 0, False)]
    tick_plan = TickPlan([[("a", 4)]], 0)
    down = [BatchOutcome(["a"], upstream_error="training answered 503 busy: later")]
    result = summary_of(picks, tick_plan, down)
    assert result.action == "training unavailable: training answered 503 busy: later"
    assert result.outage_started == "training answered 503 busy: later"
    assert result.advanced == []
    # Already recorded: not started again.
    assert summary_of(picks, tick_plan, down, outage="{}").outage_started is None

    back = [outcome_of(["a"], 200, rounds_answer(["a"], 4, 55.0))]
    result = summary_of(picks, tick_plan, back, outage="{}")
    assert result.outage_over
    assert result.action.endswith("(tick +4); training is back")
    hyper = merge(CoachSettings(), {"hyperMode": True})
    assert summary_of(picks, tick_plan, back, settings=hyper).action.endswith("(tick +4 HYPER)")


def test_training_answers_become_outcomes():
    assert (
        outcome_of(["a"], 429, "slow down").upstream_error
        == "training answered 429 http_429: slow down"
    )
    refused = outcome_of(["a", "b"], 409, {"error": {"code": "paused", "message": "no"}})
    assert refused.upstream_error is None
    assert refused.errors == [
        {"learner": "a", "code": "paused", "message": "no"},
        {"learner": "b", "code": "paused", "message": "no"},
    ]


# ---- whole ticks against Redis ------------------------------------------------------------------
def queue(keys: Keys, learner: str) -> str:
    return keys.coach_queue(keys.shard_of(learner))


async def coached(redis, keys: Keys) -> list[str]:
    found = []
    for shard in keys.all_shards():
        found += await redis.zrange(keys.coach_coached(shard), 0, -1)
    return sorted(found)


async def test_a_tick_coaches_the_queue_and_records_it_in_redis(redis, scripts, keys):
    for learner in ("a", "b", "c"):
        await create(scripts, keys, learner)
    await redis.sadd(keys.coach_fastlane(keys.shard_of("a")), "a")
    store = CoachStore(redis, keys)
    await store.ensure_default_settings()
    training, backlog = FakeTraining(avg=60.0), RecordingBacklog()
    loop = CoachLoop(store, training, AllShards(keys), meta=backlog)
    settings = await store.load_settings()

    summary = await loop.tick(settings)

    assert backlog.waits == [(8, 1.2)]  # two fast-lane intervals of 600 ms
    assert sorted(x for learners, _ in training.calls for x in learners) == ["a", "b", "c"]
    assert {n for _, n in training.calls} == {8}  # unknown averages count as 0: aggressive
    assert summary["rounds"] == 24 and summary["coached"] == 3 and summary["avgMastery"] == 60.0
    stats = await redis.hgetall(keys.coach_stats)
    assert stats == {"ticks": "1", "roundsRun": "24"}
    state = await redis.hgetall(keys.coach_state)
    assert orjson.loads(state["lastStatus"]) == summary
    assert (
        state["lastAction"] == "micro-batch 1 calls, 24 rounds for 3 learners (tick +24 aggressive)"
    )
    assert int(state["lastActionAt"]) > 0
    assert await coached(redis, keys) == ["a", "b", "c"]
    assert training.fences == [None]  # a single coach over every shard: unfenced
    # Strides are the rounds given (8 each), halved in the fast lane (weight 2).
    passes = {x: await redis.zscore(queue(keys, x), x) for x in "abc"}
    assert passes == {"a": 4.0, "b": 8.0, "c": 8.0}
    assert await store.rounds_per_min() == 24

    # The averages training reported carry over: 60 is above the aggressive threshold.
    training.calls.clear()
    await loop.tick(settings)
    assert {n for _, n in training.calls} == {4}
    assert await redis.hget(keys.coach_stats, "ticks") == "2"


async def test_a_tick_records_a_training_outage_and_its_end(redis, scripts, keys):
    await create(scripts, keys, "a")
    store = CoachStore(redis, keys)
    training = FakeTraining()
    loop = CoachLoop(store, training, AllShards(keys))
    settings = CoachSettings()

    training.down = True
    await loop.tick(settings)
    _, _, outage = await store.loop_inputs()
    assert outage is not None
    recorded = orjson.loads(outage)
    assert recorded["error"] == "training answered 503 busy: later" and recorded["since"] > 0
    assert await redis.hget(keys.coach_stats, "failedCalls") == "1"
    assert await redis.zscore(queue(keys, "a"), "a") == 0  # keeps its turn
    assert (await redis.hget(keys.coach_state, "lastAction")).startswith("training unavailable")

    # Still down: the outage keeps its start.
    await loop.tick(settings, outage)
    assert await redis.hget(keys.coach_state, outage_field("training")) == outage

    training.down = False
    await loop.tick(settings, outage)
    assert await redis.hget(keys.coach_state, outage_field("training")) is None
    assert (await redis.hget(keys.coach_state, "lastAction")).endswith("training is back")
    assert await redis.hget(keys.coach_stats, "failedCalls") == "2"


async def test_a_tick_on_an_empty_queue_promotes_due_reviews(redis, scripts, keys):
    store = CoachStore(redis, keys)
    training = FakeTraining()
    loop = CoachLoop(store, training, AllShards(keys))
    await redis.zadd(keys.coach_coached(3), {"long-ago": 1})
    summary = await loop.tick(CoachSettings())
    assert summary == {"needing": 0, "promoted": 0, "rounds": 0}
    assert training.calls == []
    assert await redis.hget(keys.coach_state, "lastAction") == "no learners need coaching"
    assert await redis.hgetall(keys.coach_stats) == {"ticks": "1"}
    assert await redis.zcard(keys.coach_coached(3)) == 0  # pruned

    await create(scripts, keys, "a")
    await redis.zrem(queue(keys, "a"), "a")
    await redis.zadd(keys.coach_ready(keys.shard_of("a")), {"a": 1})  # its review is long due
    summary = await loop.tick(CoachSettings())
    assert summary["promoted"] == 1 and summary["coached"] == 1


async def test_learner_errors_are_counted(redis, scripts, keys):
    await create(scripts, keys, "a")

    class Refusing(FakeTraining):
        async def run_batch(self, learners: list[str], rounds_per_learner: int, fences=None) -> Any:
            return outcome_of(learners, 409, {"error": {"code": "training_not_started"}})

    store = CoachStore(redis, keys)
    summary = await CoachLoop(store, Refusing(), AllShards(keys)).tick(CoachSettings())
    assert summary["learnerErrors"] == 1 and summary["rounds"] == 0
    assert await redis.hget(keys.coach_stats, "learnerErrors") == "1"
    # Answered for: its turn is over, its pass moves on by the 8 rounds it was given.
    assert await redis.zscore(queue(keys, "a"), "a") == 8.0


def test_tick_size_follows_the_queue_within_its_bounds():
    fixed = CoachSettings()  # fast lane on: 4 calls × 4 learners every 600 ms
    assert tick_size(fixed, 50_000) == TickSize(16, 4)  # coverageTarget 0: the fixed pace
    sized = merge(fixed, {"coverageTarget": 0.9})
    # 50,000 needing × 0.9 a minute = 450 every 600 ms, in 4 calls of 113.
    assert tick_size(sized, 50_000) == TickSize(450, 113)
    assert tick_size(sized, 100) == TickSize(16, 4)  # never below the fixed pace
    assert tick_size(sized, None) == TickSize(16, 4)  # queues unknown
    bounded = merge(sized, {"maxLearnersPerTick": 300})
    assert tick_size(bounded, 50_000) == TickSize(300, 75)
    slow = merge(sized, {"fastLane": {"enabled": False}, "intervalMs": 6000})
    assert tick_size(slow, 50_000) == TickSize(2000, 500)  # 4,500 wanted, bounded at 2,000


async def test_a_tick_sized_to_the_queue_coaches_all_of_it(redis, scripts, keys):
    learners = [f"q{i:02d}" for i in range(60)]
    for learner in learners:
        await create(scripts, keys, learner)
    store = CoachStore(redis, keys)
    await store.ensure_default_settings()
    training = FakeTraining(avg=60.0)
    loop = CoachLoop(store, training, AllShards(keys))
    # One tick a minute: the fixed pace coaches 16 of the 60 in it.
    slow = merge(await store.load_settings(), {"fastLane": {"intervalMs": 60_000}})
    fixed = await loop.tick(slow)
    assert fixed["coached"] == 16 and "learnersPerTick" not in fixed

    # Sized to cover every queued learner each minute: all 60, in 4 calls of 15 at most.
    training.calls.clear()
    summary = await loop.tick(merge(slow, {"coverageTarget": 1.0}))
    assert summary["coached"] == 60 and summary["learnersPerTick"] == 60
    assert sorted(x for call, _ in training.calls for x in call) == learners
    assert max(len(call) for call, _ in training.calls) <= 15
    # Bounded: never more than maxLearnersPerTick in one tick.
    summary = await loop.tick(merge(slow, {"coverageTarget": 1.0, "maxLearnersPerTick": 40}))
    assert summary["coached"] == 40 and summary["learnersPerTick"] == 40
