"""Who is in the fast lane, against a real Redis: learners close to readiness enter on their own
(bounded per shard, leaving when ready or when their window lapses, then cooling down), operators
pin learners in or out, and a refused pin call changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.coach import store as coach_store
from services.coach.scheduler import PinChanges
from services.coach.settings_store import CoachSettings, merge
from services.coach.store import CoachStore, PinsBusy, TooManyPins, UnknownLearners
from services.coach.tick import TickResult, readiness
from services.coach.training_api import outcome_of
from shared.keys import Keys
from shared.learner_state import LearnerState, encode

T0 = 1_000_000_000  # ms
WINDOW_S = 60


async def create(scripts, keys: Keys, *learners: str) -> None:
    for learner in learners:
        state = LearnerState(id=learner, seed=1, region="eu", created=1.0, active=True)
        await scripts.create_learner(
            keys=keys.create_learner_keys(learner), args=[learner, encode(state), "eu", 1]
        )


async def tick(
    store: CoachStore,
    at_ms: int,
    *,
    close: Sequence[str] = (),
    ready: Sequence[str] = (),
    auto_max: int = 100,
) -> None:
    """A tick's record that saw `close` and `ready` learners (nothing coached, no advances)."""
    result = TickResult(
        at_ms,
        {"needing": 0, "promoted": 0, "rounds": 0},
        "",
        ready=list(ready),
        close=list(close),
        window_s=WINDOW_S,
        auto_max=auto_max,
    )
    assert await store.record_tick(result, store.keys.all_shards()) == []


async def fast_at(store: CoachStore, at_ms: int) -> set[str]:
    picks = await store.pick(100, store.keys.all_shards(), auto_window_s=WINDOW_S, at_ms=at_ms)
    return {p.learner for p in picks if p.fast}


@pytest.fixture
def one_shard(prefix: str) -> Keys:
    return Keys(prefix, shards=1)  # one shard: its share of autoMax is autoMax


def test_close_means_not_ready_within_the_margin_of_min_avg_mastery():
    answer = {
        "rounds": [
            {"learner": "near", "avg": 60.0, "ready": False},
            {"learner": "near", "avg": 66.0, "ready": False},  # its last round decides
            {"learner": "edge", "avg": 65.0, "ready": False},
            {"learner": "far", "avg": 64.9, "ready": False},
            {"learner": "done", "avg": 80.0, "ready": True},
            {"learner": "many-gaps", "avg": 90.0, "ready": False},  # too many domains below
        ]
    }
    outcomes = [outcome_of(["near", "edge", "far", "done", "many-gaps"], 200, answer)]
    settings = CoachSettings()  # minAvgMastery 75, autoMargin 10
    assert readiness(outcomes, settings) == (["done"], ["edge", "many-gaps", "near"])
    off = merge(settings, {"fastLane": {"auto": False}})
    assert readiness(outcomes, off) == (["done"], [])
    lane_off = merge(settings, {"fastLane": {"enabled": False}})
    assert readiness(outcomes, lane_off) == (["done"], [])
    wide = merge(settings, {"fastLane": {"autoMargin": 20}})
    assert "far" in readiness(outcomes, wide)[1]


async def test_close_learners_enter_and_leave_when_ready(redis, scripts, keys):
    await create(scripts, keys, "a", "b", "c")
    store = CoachStore(redis, keys)
    await tick(store, T0, close=["a", "b"])
    assert await fast_at(store, T0 + 1) == {"a", "b"}
    members = await store.fast_lane_members(WINDOW_S, T0 + 1)
    assert members.auto == [("a", T0), ("b", T0)] and members.auto_count == 2
    assert members.pinned == [] and members.pinned_count == 0

    await tick(store, T0 + 1000, ready=["a"])
    assert await fast_at(store, T0 + 1001) == {"b"}
    # Without the automatic rule the members are not fast (the flags are not even read).
    picks = await store.pick(100, keys.all_shards(), auto_window_s=None, at_ms=T0 + 1001)
    assert not any(p.fast for p in picks)


async def test_a_lapsed_window_ends_membership_and_cools_down(redis, scripts, keys):
    await create(scripts, keys, "a")
    store = CoachStore(redis, keys)
    await tick(store, T0, close=["a"])
    lapsed = T0 + WINDOW_S * 1000
    assert await fast_at(store, lapsed - 1) == {"a"}
    assert await fast_at(store, lapsed) == set()
    await tick(store, lapsed + 5, close=["a"])  # still close: it yields its place a window
    assert await fast_at(store, lapsed + 10) == set()
    assert (await store.fast_lane_members(WINDOW_S, lapsed + 10)).auto_count == 0
    await tick(store, T0 + 2 * WINDOW_S * 1000 + 1, close=["a"])  # pruned, then admitted again
    assert await fast_at(store, T0 + 2 * WINDOW_S * 1000 + 2) == {"a"}


async def test_automatic_members_are_bounded_per_shard(redis, scripts, one_shard):
    keys = one_shard
    await create(scripts, keys, "a", "b", "c", "d")
    store = CoachStore(redis, keys)
    await tick(store, T0, close=["a", "b", "c"], auto_max=2)
    assert await fast_at(store, T0 + 1) == {"a", "b"}
    await tick(store, T0 + 10, close=["c", "d"], auto_max=2)  # full: nobody else
    assert await fast_at(store, T0 + 11) == {"a", "b"}
    await tick(store, T0 + 20, ready=["a"], close=["d"], auto_max=2)  # a place frees up
    assert await fast_at(store, T0 + 21) == {"b", "d"}
    assert await redis.zcard(keys.coach_fastlane_auto(0)) == 2
    await tick(store, T0 + 30, close=["c"], auto_max=0)  # autoMax 0: nobody enters
    assert await fast_at(store, T0 + 31) == {"b", "d"}


async def test_pins_win_over_the_automatic_rule(redis, scripts, keys):
    await create(scripts, keys, "in", "out", "auto", "gone")
    store = CoachStore(redis, keys)
    await tick(store, T0, close=["auto", "out"])
    assert await fast_at(store, T0 + 1) == {"auto", "out"}
    await store.update_fast_lane({}, PinChanges(pin=["in"], unpin=[], exclude=["out"]))
    assert await fast_at(store, T0 + 2) == {"in", "auto"}
    await tick(store, T0 + 3, close=["in", "out"])  # neither enters the automatic set
    assert await redis.zscore(keys.coach_fastlane_auto(keys.shard_of("in")), "in") is None
    assert await redis.zscore(keys.coach_fastlane_auto(keys.shard_of("out")), "out") is None
    members = await store.fast_lane_members(WINDOW_S, T0 + 4)
    assert (members.pinned, members.excluded) == (["in"], ["out"])
    assert [x for x, _ in members.auto] == ["auto"]

    # A learner that left the queue (ready by a client's round) is not admitted.
    await redis.zrem(keys.coach_queue(keys.shard_of("gone")), "gone")
    await tick(store, T0 + 5, close=["gone"])
    assert await redis.zscore(keys.coach_fastlane_auto(keys.shard_of("gone")), "gone") is None

    # Dropping the pins hands both back to the automatic rule.
    await store.update_fast_lane({}, PinChanges(pin=[], unpin=["in", "out"], exclude=[]))
    await tick(store, T0 + 6, close=["out"])
    assert await fast_at(store, T0 + 7) == {"auto", "out"}


async def test_refused_pins_change_nothing(redis, scripts, keys):
    await create(scripts, keys, "a", "b", "c")
    store = CoachStore(redis, keys)
    await store.update_fast_lane({"maxPinned": 2}, PinChanges(["a"], [], ["b"]))
    settings_before = await redis.hgetall(keys.coach_settings)

    with pytest.raises(UnknownLearners) as unknown:
        await store.update_fast_lane({"weight": 5}, PinChanges(["c"], [], ["ghost"]))
    assert unknown.value.missing == ["ghost"]
    with pytest.raises(TooManyPins) as full:
        await store.update_fast_lane({"weight": 5}, PinChanges(["c"], [], []))
    assert (full.value.pinned, full.value.limit) == (3, 2)
    assert await redis.hgetall(keys.coach_settings) == settings_before
    members = await store.fast_lane_members(WINDOW_S)
    assert (members.pinned, members.excluded) == (["a"], ["b"])

    # Re-pinning, moving a pin or dropping one in the same call fits the bound.
    await store.update_fast_lane({}, PinChanges(["c", "b"], ["a"], []))
    members = await store.fast_lane_members(WINDOW_S)
    assert (members.pinned, members.excluded) == (["b", "c"], [])
    # A bound raised in the same call applies to it.
    changed = await store.update_fast_lane({"maxPinned": 3}, PinChanges(["a"], [], []))
    assert changed == ["fastLane.maxPinned"]
    assert (await store.fast_lane_members(WINDOW_S)).pinned_count == 3


async def test_concurrent_pin_calls_never_pass_the_bound(redis, scripts, keys):
    # Two coach replicas (two stores) taking pin calls at once: each call is checked against
    # the count the others left, so exactly maxPinned of them pass.
    learners = [f"p{i}" for i in range(12)]
    await create(scripts, keys, *learners)
    stores = [CoachStore(redis, keys), CoachStore(redis, keys)]
    await stores[0].update_fast_lane({"maxPinned": 5}, PinChanges([], [], []))

    async def pin(i: int, learner: str) -> bool:
        try:
            await stores[i % 2].update_fast_lane({}, PinChanges([learner], [], []))
        except TooManyPins:
            return False
        return True

    passed = await asyncio.gather(*(pin(i, x) for i, x in enumerate(learners)))
    assert sum(passed) == 5
    assert (await stores[1].fast_lane_members(WINDOW_S)).pinned_count == 5
    assert await redis.exists(keys.coach_pins_lock) == 0  # given back after every call


async def test_a_held_pin_lock_is_waited_for_and_then_refused(redis, scripts, keys, monkeypatch):
    await create(scripts, keys, "a")
    store = CoachStore(redis, keys)
    # A holder that died: its lock lapses, and the call goes through once it has.
    await redis.set(keys.coach_pins_lock, "dead-holder", px=300)
    await store.update_fast_lane({}, PinChanges(["a"], [], []))
    assert (await store.fast_lane_members(WINDOW_S)).pinned == ["a"]
    # One that keeps it past the wait: refused, nothing changed, its lock left alone.
    monkeypatch.setattr(coach_store, "PINS_LOCK_WAIT_S", 0.2)
    await redis.set(keys.coach_pins_lock, "slow-holder", px=60_000)
    with pytest.raises(PinsBusy):
        await store.update_fast_lane({"weight": 7}, PinChanges([], [], ["a"]))
    members = await store.fast_lane_members(WINDOW_S)
    assert (members.pinned, members.excluded) == (["a"], [])
    assert (await store.load_settings()).fastLane.weight != 7
    assert await redis.get(keys.coach_pins_lock) == "slow-holder"


async def test_deleting_a_learner_drops_its_pins_and_membership(redis, scripts, keys):
    await create(scripts, keys, "a", "b")
    store = CoachStore(redis, keys)
    await tick(store, T0, close=["a"])
    await store.update_fast_lane({}, PinChanges([], [], ["b"]))
    for learner in ("a", "b"):
        assert await scripts.delete_learner(keys=keys.delete_learner_keys(learner), args=[learner])
    members = await store.fast_lane_members(WINDOW_S, T0 + 1)
    assert (members.auto_count, members.excluded_count) == (0, 0)
